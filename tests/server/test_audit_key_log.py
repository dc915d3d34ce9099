"""The key log (`server.audit_key_log`): the keys of big calls appended to one file per audit
file, each record naming its range; covered by the chain, synced before the records, cut and
renewed at rotation, found by `audit find`, and verified after a killed writer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from server import audit, audit_key_log
from server.audit import AuditLog, KeyBatch
from server.audit_find import find_consultations
from server.audit_key_log import named_keys
from server.audit_keys import AuditKeys
from server.audit_verify import verify

KEYS = AuditKeys.from_secret(bytes(range(32)))
SOUGHT = bytes(range(16))


def _key(i: int) -> bytes:
    return bytes([200 + i]) * 16


def _record(log: AuditLog, keys: bytes) -> None:
    batch = KeyBatch()
    batch.add(keys)
    log.record(
        rpc="CheckStream", identity="dev", organisation="org", roles=["enforcement"],
        zone="Gent", ruleset_revision="r1", snapshot_id="s1", pairs=batch.count,
        outcomes={"ALLOWED": batch.count}, keys=batch,
    )  # fmt: skip


def _records(directory: Path) -> list[dict[str, Any]]:
    return [rec for _, rec in audit.read_series(directory, "audit-w0")]


def test_big_records_share_one_key_log_each_at_its_offset(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2)
    written = [_key(1) * 3, SOUGHT * 4, _key(2) * 5]
    for keys in written:
        _record(log, keys)
    log.close()
    records = _records(tmp_path)
    assert len({r["keys_file"] for r in records}) == 1
    assert [r["keys_offset"] for r in records] == [0, 3 * 16, 7 * 16]
    assert [named_keys(tmp_path, r) for r in records] == written
    key_log = tmp_path / str(records[0]["keys_file"])
    assert key_log.stat().st_size == 12 * 16  # cut to its keys on close
    assert verify(tmp_path / "audit-w0.jsonl", KEYS) == []


def test_an_edited_key_is_named_by_its_own_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2)
    for i in range(3):
        _record(log, _key(i) * 3)
    log.close()
    second = _records(tmp_path)[1]
    key_log = tmp_path / str(second["keys_file"])
    data = bytearray(key_log.read_bytes())
    data[int(second["keys_offset"]) + 20] ^= 1  # the second key of the second record
    key_log.write_bytes(bytes(data))
    problems = verify(tmp_path / "audit-w0.jsonl", KEYS)
    assert problems == ["audit-w0.jsonl:2: the consulted keys do not match their digest"]
    key_log.write_bytes(bytes(data[: 3 * 16 + 8]))  # cut inside the second record
    problems = verify(tmp_path / "audit-w0.jsonl", KEYS)
    assert [p.split(":")[1] for p in problems] == ["2", "3"]


def test_keys_are_synced_before_the_record_that_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2)
    _record(log, _key(0) * 3)  # makes the key log
    key_log_fd = log._key_log.fd if log._key_log is not None else -1
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    _record(log, _key(1) * 3)
    _record(log, _key(2))  # inline: the key log has nothing new to sync
    monkeypatch.undo()
    log.close()
    assert synced == [key_log_fd, log._fd, log._fd]


def test_rotation_starts_a_new_key_log_and_cuts_the_old_one(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2, rotate_bytes=1500)
    for i in range(8):
        _record(log, _key(i) * (3 + i))
    log.close()
    files = audit.series_files(tmp_path, "audit-w0")
    assert len(files) > 2
    by_file = [[rec for _, rec in audit.read_records(f)] for f in files]
    names = [{str(r["keys_file"]) for r in recs} for recs in by_file if recs]
    assert all(len(n) == 1 for n in names)  # one key log per audit file
    assert len(set.union(*names)) == len(names)  # never shared between two
    for recs in by_file:
        if recs:
            size = (tmp_path / str(recs[0]["keys_file"])).stat().st_size
            assert size == sum(int(r["keys_count"]) for r in recs) * 16
    assert len(list((tmp_path / "audit-w0-keys").iterdir())) == len(names)  # no empty one
    assert all(verify(f, KEYS) == [] for f in files)


def test_a_big_record_that_rotates_the_file_makes_one_key_log_only(tmp_path: Path) -> None:
    """The key log named for a big record is made by its keys' write, so one that finds its file
    due for rotation leaves no key log behind in the file it left."""
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2, rotate_bytes=1500)  # 2 records a file
    for keys in (_key(1), _key(1), _key(2) * 3):  # two inline, then a big one
        _record(log, keys)
    log.close()
    files = audit.series_files(tmp_path, "audit-w0")
    first_of_each = [next(audit.read_records(f))[1]["seq"] for f in files]
    assert first_of_each == [1, 3]  # the big record rotated the file of the inline ones
    big = [r for r in _records(tmp_path) if "keys_file" in r]
    assert [(r["seq"], r["keys_offset"]) for r in big] == [(3, 0)]
    assert [p.name for p in (tmp_path / "audit-w0-keys").iterdir()] == [
        str(big[0]["keys_file"]).split("/")[1]
    ]
    assert all(verify(f, KEYS) == [] for f in files)


def test_a_killed_writer_leaves_a_key_log_that_verifies_and_is_searched(tmp_path: Path) -> None:
    """A copy of the directory taken after a synced record, as a SIGKILL would leave it (the
    key log still allocated beyond its keys); a new writer goes on in a new key log."""
    log = AuditLog(tmp_path / "live", keys=KEYS, inline_keys=2)
    _record(log, _key(0) * 3 + SOUGHT)
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "live", crashed)
    log.close()
    (left,) = (crashed / "audit-w0-keys").iterdir()
    assert left.stat().st_size > 4 * 16  # the room allocated ahead is still there
    again = AuditLog(crashed, keys=KEYS, inline_keys=2)
    _record(again, SOUGHT * 2 + _key(1) * 3)
    again.close()
    records = _records(crashed)
    assert records[0]["keys_file"] != records[1]["keys_file"]
    assert verify(crashed / "audit-w0.jsonl", KEYS) == []
    found = find_consultations(crashed, SOUGHT)
    assert [(c.where, c.times) for c in found] == [("audit-w0.jsonl#1", 1), ("audit-w0.jsonl#2", 2)]


def test_find_names_only_the_records_whose_range_holds_the_key(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2)
    _record(log, _key(0) * 5)
    _record(log, _key(1) + SOUGHT + _key(1) + SOUGHT + SOUGHT)
    _record(log, _key(2) * 4)
    log.close()
    found = find_consultations(tmp_path, SOUGHT)
    assert [(c.where, c.times) for c in found] == [("audit-w0.jsonl#2", 3)]


def test_a_record_whose_key_range_is_not_a_number_is_named_as_such(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2)
    _record(log, _key(1) * 3)
    log.close()
    path = tmp_path / "audit-w0.jsonl"
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"keys_offset":0', b'"keys_offset":"x"', 1))
    problems = verify(path, KEYS)
    assert any("the range of its keys in" in p and "is not readable" in p for p in problems), (
        problems
    )
    assert not any("is missing" in p for p in problems)


def _takes_direct_writes(directory: Path) -> bool:
    probe = directory / "direct-probe"
    probe.write_bytes(b"")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_DIRECT))
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def test_big_blobs_are_written_past_the_page_cache_aligned_and_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blobs from the direct threshold on go to the disk directly, at aligned offsets with zero
    padding after them; every record still names exactly its keys, the chain verifies, and
    `audit find` counts a key in the right records (the padding is in no record's range)."""
    monkeypatch.setattr(audit_key_log, "DIRECT_MIN_BYTES", 1024)
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2)
    written = [
        _key(1) * 3,  # 48 bytes: written as before
        _key(2) * 100 + SOUGHT + _key(2) * 199,  # 4,800 bytes: direct
        _key(3) * 5,
        SOUGHT * 2 + _key(4) * 998,  # direct
    ]
    for keys in written:
        _record(log, keys)
    assert log._key_log is not None
    direct_writes = log._key_log.direct_writes
    log.close()
    records = _records(tmp_path)
    assert [named_keys(tmp_path, r) for r in records] == written
    if _takes_direct_writes(tmp_path):
        assert direct_writes == 2
        offsets = [int(r["keys_offset"]) for r in records]
        assert offsets[1] % audit_key_log.DIRECT_ALIGN == 0
        assert offsets[3] % audit_key_log.DIRECT_ALIGN == 0
        assert offsets[1] > offsets[0] + len(written[0]) and offsets[2] >= offsets[1] + 4800
    else:  # a file system that refuses them (tmpfs): every blob written as before
        assert direct_writes == 0
    assert verify(tmp_path / "audit-w0.jsonl", KEYS) == []
    found = find_consultations(tmp_path, SOUGHT)
    assert [(c.where, c.times) for c in found] == [("audit-w0.jsonl#2", 1), ("audit-w0.jsonl#4", 2)]
