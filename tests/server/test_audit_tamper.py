"""Tamper evidence: every kind of damage to an audit file is named by `verify-audit`, with a
non-zero exit: a flipped byte, a deleted middle record, a cut tail, an emptied or deleted file,
an edit re-chained with plain SHA-256 (or, with the secret, re-keyed: then the copy of the
checkpoints taken off the machine still catches it), a forged checkpoint, another audit key,
and a log from before keyed chains."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from lez.errors import AuditKeyError
from server.__main__ import main
from server.audit import GENESIS, AuditLog, canonical_json, read_records, record_hash
from server.audit_checkpoints import Checkpoint, checkpoints_path, read_checkpoints
from server.audit_keys import AuditKeys
from server.audit_verify import verify, verify_file
from tests.server.test_audit import KEYS, _open_log, _write, audit_key_file

RECORDS = 6


def _log_with_checkpoints(directory: Path) -> Path:
    """Six records, signed checkpoints at 3 (mid-way) and 6 (on close); returns the file."""
    log = _open_log(directory, preallocate_bytes=8192, inline_keys=2)
    _write(log, 3)
    log.checkpoint()  # unless the checkpoint thread already signed the head at 3
    _write(log, 3, first=3)
    log.close()
    return log.path


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes().rstrip(b"\0")
    return [line + b"\n" for line in data.split(b"\n") if line]


def _rewrite(path: Path, lines: list[bytes], padding: int = 4096) -> None:
    path.write_bytes(b"".join(lines) + bytes(padding))


def _cli(path: Path, tmp_path: Path, *extra: str) -> int:
    return main(
        ["verify-audit", str(path), "--audit-key-file", str(audit_key_file(tmp_path)), *extra]
    )


def test_intact_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _log_with_checkpoints(tmp_path)
    cps = [
        c.checkpoint
        for c in read_checkpoints(checkpoints_path(tmp_path / "checkpoints", path.name))
    ]
    signed = [c.records for c in cps if c and c.file == path.name]
    assert 3 in signed and signed[-1] == RECORDS and signed == sorted(signed)
    assert verify(path, KEYS) == []
    assert _cli(tmp_path, tmp_path) == 0  # the directory: every file in it
    assert f"{path}: intact ({RECORDS} records)" in capsys.readouterr().out


def test_flipped_byte_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _log_with_checkpoints(tmp_path)
    lines = _lines(path)
    lines[1] = lines[1].replace(b'"pairs":2', b'"pairs":3')  # still valid JSON
    _rewrite(path, lines)
    problems = verify(path, KEYS)
    assert f"{path.name}:2: record content does not match its keyed hash" in problems[0]
    assert _cli(path, tmp_path) == 1
    assert "does not match its keyed hash" in capsys.readouterr().out
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"\n{") + 1] ^= 0x01  # the second record's opening brace: not JSON any more
    path.write_bytes(bytes(raw))
    problems = verify(path, KEYS)
    assert problems[0] == f"{path.name}:2: not a JSON record (truncated or edited)"
    assert any("could not be checked against the checkpoint" in p for p in problems)


def test_deleted_middle_record_is_detected(tmp_path: Path) -> None:
    path = _log_with_checkpoints(tmp_path)
    lines = _lines(path)
    _rewrite(path, lines[:2] + lines[3:])
    problems = verify(path, KEYS)
    assert any(p.startswith(f"{path.name}:3: chain broken") for p in problems)
    assert f"{path.name}:3: sequence 4 after 2 (records missing or moved)" in problems
    assert any("record 3 is not the head signed at" in p for p in problems)
    assert _cli(path, tmp_path) == 1


def test_cut_tail_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _log_with_checkpoints(tmp_path)
    _rewrite(path, _lines(path)[:4])  # the chain that is left is valid on its own
    problems = verify(path, KEYS)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path.name}: missing tail: the file holds 4 records, but ")
    assert problems[0].endswith(f"covers {RECORDS}: records 5-{RECORDS} were cut off")
    assert _cli(path, tmp_path) == 1
    assert "missing tail" in capsys.readouterr().out


def test_emptied_and_deleted_files_are_detected(tmp_path: Path) -> None:
    path = _log_with_checkpoints(tmp_path)
    path.write_bytes(b"")
    (problem,) = verify(path, KEYS)
    assert problem.startswith(f"{path.name}: emptied: the file holds no records, but ")
    assert problem.endswith(f"covers {RECORDS}")
    path.write_bytes(bytes(8192))  # zeroed instead: the same
    assert verify(path, KEYS) == [problem]
    path.unlink()
    (problem,) = verify(path, KEYS)
    assert problem.startswith(f"{path.name}: missing file: the file is gone, but ")
    assert _cli(tmp_path, tmp_path) == 1  # found through its checkpoints


def _rechain(lines: list[bytes], edit_at: int, mac: object) -> list[bytes]:
    """Edit record `edit_at` (0-based) and recompute every hash after it with `mac`."""
    records = [json.loads(line) for line in lines]
    records[edit_at]["pairs"] = 999
    prev = records[edit_at - 1]["hash"] if edit_at else GENESIS
    for rec in records[edit_at:]:
        rec["prev"] = prev
        body = canonical_json({k: v for k, v in rec.items() if k != "hash"})
        rec["hash"] = mac(body)  # type: ignore[operator]
        prev = rec["hash"]
    return [canonical_json(r) + b"\n" for r in records]


def test_rechained_edit_with_plain_hashes_is_detected(tmp_path: Path) -> None:
    path = _log_with_checkpoints(tmp_path)
    _rewrite(path, _rechain(_lines(path), 1, lambda b: hashlib.sha256(b).hexdigest()))
    problems = verify(path, KEYS)
    assert sum("does not match its keyed hash" in p for p in problems) == RECORDS - 1
    assert not any("chain broken" in p for p in problems)  # the chain itself is consistent
    assert any("record 3 is not the head signed at" in p for p in problems)
    assert any(f"record {RECORDS} is not the head signed at" in p for p in problems)


def test_rechained_edit_with_the_secret_is_caught_by_the_offsite_checkpoints(
    tmp_path: Path,
) -> None:
    """Someone with the audit secret rewrites records and the local checkpoints; the copy of
    the checkpoints taken off the machine before that still holds."""
    audit_dir = tmp_path / "audit"
    path = _log_with_checkpoints(audit_dir)
    offsite = tmp_path / "offsite"
    shutil.copytree(audit_dir / "checkpoints", offsite)
    forged = _rechain(_lines(path), 1, KEYS.mac)
    _rewrite(path, forged)
    shutil.rmtree(audit_dir / "checkpoints")
    again = AuditLog(audit_dir, keys=KEYS)  # re-signs a checkpoint of the forged head
    again.close()
    assert verify(path, KEYS) == []  # locally consistent: the secret was enough
    problems = verify(path, KEYS, offsite)
    assert any(f"record {RECORDS} is not the head signed at" in p for p in problems)
    assert _cli(path, tmp_path, "--checkpoints", str(offsite)) == 1


def test_forged_checkpoint_is_detected(tmp_path: Path) -> None:
    path = _log_with_checkpoints(tmp_path)
    cp_file = checkpoints_path(tmp_path / "checkpoints", path.name)
    lines = cp_file.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    last["records"] = 4  # claims less than was signed: would hide records 5-6
    cp_file.write_bytes(b"".join(lines[:-1]) + json.dumps(last).encode() + b"\n")
    problems = verify(path, KEYS)
    assert problems == [
        f"{cp_file.name}:{len(lines)}: the checkpoint's signature does not verify with the audit "
        "key (forged or edited, or signed with another audit key)"
    ]
    other = checkpoints_path(tmp_path / "checkpoints", "audit-w1.jsonl")
    other.write_bytes(lines[0])  # a good checkpoint of w0 moved to w1
    moved = verify(tmp_path / "audit-w1.jsonl", KEYS)
    assert any("the checkpoint is of audit-w0.jsonl, not audit-w1.jsonl" in p for p in moved)


def test_another_audit_key_is_refused(tmp_path: Path) -> None:
    path = _log_with_checkpoints(tmp_path)
    other = AuditKeys.from_secret(b"another secret of 32 bytes......")
    with pytest.raises(AuditKeyError, match=r"chained with audit key .*\(--audit-key-file\)"):
        AuditLog(tmp_path, keys=other)
    problems = verify(path, other)
    assert any(f"chained with audit key {KEYS.key_id}, the key file gives" in p for p in problems)
    assert any("signature does not verify" in p for p in problems)
    without_key = verify(path, None)
    assert any(p.endswith("give --audit-key-file to check them") for p in without_key)
    assert any("signature without the audit key; give --audit-key-file" in p for p in without_key)


def _legacy_log(directory: Path, n: int) -> Path:
    """A log as the unkeyed writer left it: plain SHA-256 chain, no checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "audit-w0.jsonl"
    prev, lines = GENESIS, []
    for seq in range(1, n + 1):
        rec = {"seq": seq, "ts": "2026-01-01T00:00:00+00:00", "prev": prev, "rpc": "Check",
               "pairs": 1, "keys": [], "keys_count": 0,
               "keys_sha256": hashlib.sha256(b"").hexdigest()}  # fmt: skip
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        lines.append(canonical_json(rec) + b"\n")
    path.write_bytes(b"".join(lines))
    return path


def test_legacy_log_says_what_to_do_and_is_anchored_once_continued(tmp_path: Path) -> None:
    path = _legacy_log(tmp_path, 3)
    (problem,) = verify(path, KEYS)
    assert "written before keyed audit chains" in problem
    assert "start the server on this audit directory with an audit key" in problem
    log = _open_log(tmp_path)  # a keyed server continues it
    _write(log, 2)
    log.close()
    verdict = verify_file(path, KEYS)
    assert verdict.problems == []
    assert any("records 1-3 were written before keyed audit chains" in n for n in verdict.notes)
    assert [r.get("chain") is None for _, r in read_records(path)] == [True] * 3 + [False] * 2
    lines = _lines(path)
    edited = json.loads(lines[0])
    edited["rpc"] = "CheckStream"
    edited["hash"] = record_hash(edited)  # an unkeyed record can be re-hashed...
    _rewrite(path, [canonical_json(edited) + b"\n", *lines[1:]])
    problems = verify(path, KEYS)  # ...but the keyed record after it anchors it
    assert any(p.startswith(f"{path.name}:2: chain broken") for p in problems)


def test_checkpoints_are_signed_by_records_and_by_time(tmp_path: Path) -> None:
    by_records = _open_log(tmp_path / "r", checkpoint_every_records=5, checkpoint_every_s=3600)
    by_time = _open_log(tmp_path / "t", checkpoint_every_records=10_000, checkpoint_every_s=0.05)
    try:
        _write(by_records, 12)
        _write(by_time, 3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = [
                c.checkpoint.records
                for c in read_checkpoints(by_records.checkpoints.path)
                if c.checkpoint
            ]
            t = [
                c.checkpoint.records
                for c in read_checkpoints(by_time.checkpoints.path)
                if c.checkpoint
            ]
            if r and max(r) >= 10 and t and max(t) == 3:
                break
            time.sleep(0.02)
        assert max(r) >= 10 and r == sorted(r) and len(r) <= 4  # first record, then every 5
        assert max(t) == 3
        assert verify(by_time.path, KEYS) == []
    finally:
        by_records.close()
        by_time.close()
    last = [c.checkpoint for c in read_checkpoints(by_records.checkpoints.path)][-1]
    assert last is not None and last.records == 12  # on close


def test_record_mac_is_hmac_sha256_under_the_chain_key() -> None:
    body = b'{"seq":1}' * 60
    assert KEYS.mac(body) == hmac.digest(KEYS._chain_key, body, "sha256").hex()
    assert KEYS.mac(body) != AuditKeys.from_secret(b"another secret of 32 bytes......").mac(body)


def test_a_checkpoint_never_covers_records_not_yet_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a sync window, records are synced later: a checkpoint syncs them before signing."""
    log = _open_log(tmp_path, sync_window_s=3600, checkpoint_every_s=3600)
    events: list[str] = []
    real_fdatasync, real_append = os.fdatasync, log.checkpoints.append

    def fdatasync(fd: int) -> None:
        events.append("sync" if fd == log._fd else "other")
        real_fdatasync(fd)

    def append(checkpoint: Checkpoint) -> None:
        events.append(f"checkpoint {checkpoint.records}")
        real_append(checkpoint)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(log.checkpoints, "append", append)
    _write(log, 3)
    time.sleep(0.05)  # the first-record checkpoint, if the thread runs now
    log.checkpoint()
    monkeypatch.undo()
    log.close()
    signed = [i for i, e in enumerate(events) if e.startswith("checkpoint")]
    assert signed and events[signed[-1]] == "checkpoint 3"
    assert all(events[i - 1] == "sync" for i in signed)  # synced right before each signature


def test_a_server_reopening_a_cut_or_rewritten_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _log_with_checkpoints(tmp_path)
    lines = _lines(path)
    _rewrite(path, lines[:4])
    caplog.set_level(logging.ERROR, logger="lez.server")
    _open_log(tmp_path).close()
    assert f"audit log {path.name} holds 4 records but its checkpoint signed at" in caplog.text
    assert f"covers {RECORDS}: records were removed" in caplog.text
    caplog.clear()
    other = _log_with_checkpoints(tmp_path / "b")
    _rewrite(other, _rechain(_lines(other), 1, KEYS.mac))
    _open_log(tmp_path / "b").close()
    assert "its last record is not the one signed at" in caplog.text


def test_verify_audit_without_a_readable_key_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log_with_checkpoints(tmp_path)
    assert main(["verify-audit", str(path), "--audit-key-file", str(tmp_path / "nope")]) == 2
    assert "cannot read audit key file" in capsys.readouterr().err


def test_the_first_record_of_a_new_log_is_checkpointed_at_once(tmp_path: Path) -> None:
    """A server that keeps running after its first calls has them under a signed checkpoint
    without waiting for the checkpoint interval or its stop (a record cut off the end of a log
    no checkpoint covers cannot be told from one never written)."""
    log = _open_log(tmp_path, checkpoint_every_records=1000, checkpoint_every_s=600)
    try:
        _write(log, 1)
        where = checkpoints_path(tmp_path / "checkpoints", log.path.name)
        deadline = time.monotonic() + 10
        signed: list[Checkpoint] = []
        while not signed and time.monotonic() < deadline:
            signed = [c.checkpoint for c in read_checkpoints(where) if c.checkpoint is not None]
            time.sleep(0.02)
        assert [c.records for c in signed] == [1]
    finally:
        log.close()
