"""The audit chain: every consultation recorded, tampering detected, never a raw plate."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from lez.api.v1 import access_pb2 as pb
from lez.errors import AuditClosed
from server import audit
from server.__main__ import main
from server.audit import AuditLog, KeyBatch
from server.audit_key_log import named_keys
from server.audit_keys import AUDIT_KEY_HEADER, AuditKeys, load_audit_keys
from server.audit_verify import verify
from server.config import MIB, parse_serve_args
from tests.server.conftest import DAY, VEHICLES, ServerThread
from tests.server.helpers import chunk, stub

PLATES = [v.plate for v in VEHICLES] + ["9ZZZ999"]
KEY_HEX = bytes(range(16)).hex()  # the key `_write` consults
ROOT = Path(__file__).resolve().parents[2]
AUDIT_SECRET = bytes(range(32))
KEYS = AuditKeys.from_secret(AUDIT_SECRET)


def _open_log(directory: Path, **options: Any) -> AuditLog:
    """An audit log keyed with the tests' audit secret."""
    return AuditLog(directory, keys=KEYS, **options)


def _problems(path: Path) -> list[str]:
    return verify(path, KEYS)


def served_problems(server: ServerThread, path: Path) -> list[str]:
    """Problems of an audit file written by a running test server (keyed with its own audit
    key), after it signed a checkpoint of what it wrote so far."""
    assert server.app.audit is not None
    server.app.audit.checkpoint()
    return verify(path, load_audit_keys(server.app.config.audit_key_path))


def audit_key_file(directory: Path) -> Path:
    """A key file holding the tests' audit secret (for the command line)."""
    path = directory / "audit.key"
    path.write_text(f"{AUDIT_KEY_HEADER}\n{AUDIT_SECRET.hex()}\n")
    return path


def _write(log: AuditLog, n: int, *, first: int = 0) -> None:
    for i in range(first, first + n):
        keys = KeyBatch()
        keys.add(bytes(range(16)) * (i + 1))
        log.record(
            rpc="Check",
            identity="dev",
            organisation="org",
            roles=["desk"],
            zone="gent",
            ruleset_revision="r1",
            snapshot_id="s1",
            pairs=i + 1,
            outcomes={"ALLOWED": i + 1},
            keys=keys,
        )


def test_chain_verifies_and_detects_tampering(tmp_path: Path) -> None:
    log = _open_log(tmp_path, inline_keys=2)
    _write(log, 4)
    log.close()
    path = tmp_path / "audit-w0.jsonl"
    assert _problems(path) == []
    key_file = audit_key_file(tmp_path)
    assert main(["verify-audit", str(path), "--audit-key-file", str(key_file)]) == 0
    lines = [json.dumps(r) for _, r in audit.read_records(path)]  # rewritten without padding
    rec = json.loads(lines[1])
    rec["pairs"] = 999
    tampered = [*lines[:1], json.dumps(rec), *lines[2:]]
    path.write_text("\n".join(tampered) + "\n")
    assert any("does not match its keyed hash" in p for p in _problems(path))
    assert main(["verify-audit", str(path), "--audit-key-file", str(key_file)]) == 1
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # a record removed
    assert any("chain broken" in p for p in _problems(path))


def test_canonical_json_is_the_sorted_compact_ascii_encoding() -> None:
    """The encoder made once for the records writes exactly what `json` writes with sorted keys,
    no spaces and ASCII only, nested values included: the bytes `verify-audit` re-hashes."""
    record = {
        "zone": "Liège",
        "outcomes": {"NOT_ALLOWED": 2, "ALLOWED": 1},
        "roles": ["desk", "appeals"],
        "extra": {"b": [1.5, None, True], "a": 'quote " and \\ back'},
        "seq": 7,
    }
    expected = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert audit.canonical_json(record) == expected.encode()
    assert audit.record_body({**record, "hash": "x"}) == expected.encode()


@given(st.integers(0, 4_102_444_800_000_000), st.integers(0, 3_000_000))
def test_record_clock_writes_what_datetime_writes(micros: int, later: int) -> None:
    """A record's `ts` and UTC day are those of `datetime.isoformat(timespec="microseconds")` for
    any instant, and stay so when the clock moves on (within its second or past it: the text
    it formats once a second is replaced)."""
    clock = audit.RecordClock()
    for at in (micros, micros + later, micros + later % 1_000_000, micros):
        moment = dt.datetime.fromtimestamp(at // 1_000_000, dt.UTC).replace(
            microsecond=at % 1_000_000
        )
        assert clock.stamp(at) == (moment.isoformat(timespec="microseconds"), moment.date())


def test_a_record_is_stamped_now_in_utc(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    log = _open_log(tmp_path)
    _write(log, 1)
    log.close()
    (_, rec), *_ = audit.read_records(log.path)
    stamped = dt.datetime.fromisoformat(rec["ts"])
    assert stamped.tzinfo is not None and before <= stamped <= dt.datetime.now(dt.UTC)


def test_sidecar_keys_are_covered(tmp_path: Path) -> None:
    log = _open_log(tmp_path, inline_keys=1)
    _write(log, 3)
    log.close()
    path = tmp_path / "audit-w0.jsonl"
    assert _problems(path) == []
    sidecar = next((tmp_path / "audit-w0-keys").iterdir())
    sidecar.write_bytes(b"\0" * 16 + sidecar.read_bytes()[16:])
    assert any("do not match their digest" in p for p in _problems(path))


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().rstrip(b"\0").split(b"\n") if line]


def _keys(directory: Path, rec: dict[str, Any]) -> bytes:
    if "keys_file" in rec:
        return named_keys(directory, rec)
    return b"".join(bytes.fromhex(k) for k in rec["keys"])


def test_records_bind_their_keys_by_blake3(tmp_path: Path) -> None:
    """Each record's `keys_blake3` is the BLAKE3-256 of its keys, inline or in the key log."""
    log = _open_log(tmp_path, inline_keys=2)
    _write(log, 4)  # 1 and 2 keys inline, 3 and 4 in the key log
    log.close()
    records = [json.loads(line) for line in _lines(tmp_path / "audit-w0.jsonl")]
    assert [("keys_file" in r) for r in records] == [False, False, True, True]
    for i, rec in enumerate(records):
        assert "keys_sha256" not in rec
        assert rec["keys_blake3"] == blake3(bytes(range(16)) * (i + 1)).hexdigest()
        assert rec["keys_blake3"] == blake3(_keys(tmp_path, rec)).hexdigest()


def test_records_written_with_sha256_digests_still_verify(tmp_path: Path) -> None:
    """A log written before BLAKE3 (its records hold `keys_sha256`, the SHA-256 of their keys)
    verifies, and an edited key in it is still caught."""
    log = _open_log(tmp_path, inline_keys=2)
    _write(log, 4)
    log.close()
    path = tmp_path / "audit-w0.jsonl"
    prev, lines = audit.GENESIS, []
    for line in _lines(path):  # the records as the writer before BLAKE3 made them
        rec = json.loads(line)
        del rec["keys_blake3"], rec["hash"]
        rec["keys_sha256"] = hashlib.sha256(_keys(tmp_path, rec)).hexdigest()
        rec["prev"] = prev
        rec["hash"] = prev = KEYS.mac(audit.canonical_json(rec))
        lines.append(audit.canonical_json(rec) + b"\n")
    path.write_bytes(b"".join(lines) + bytes(4096))
    shutil.rmtree(tmp_path / audit.CHECKPOINTS_DIR)
    _open_log(tmp_path).close()  # checkpoints of the rewritten head, as that writer signed
    assert _problems(path) == []
    key_log = next((tmp_path / "audit-w0-keys").iterdir())
    key_log.write_bytes(b"\1" + key_log.read_bytes()[1:])
    assert _problems(path) == ["audit-w0.jsonl:3: the consulted keys do not match their digest"]


def test_chain_continues_after_restart(tmp_path: Path) -> None:
    first = _open_log(tmp_path)
    _write(first, 2)
    first.close()
    second = _open_log(tmp_path)
    _write(second, 2)
    second.close()
    assert _problems(tmp_path / "audit-w0.jsonl") == []


def test_server_audits_without_plates(
    server: ServerThread,
    channel: grpc.Channel,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    for p in PLATES:
        s.Check(pb.CheckRequest(plate=p, zone=zone, date="2025-06-02"))
    stream_plates = PLATES * 5  # more than audit_inline_keys: a sidecar file
    answers = list(
        s.CheckStream(iter([chunk(stream_plates, [DAY] * len(stream_plates), zone=zone)]))
    )
    errors = []
    for bad in ({"zone": "atlantis"}, {"ruleset_revision": "nope"}):
        try:
            s.Check(pb.CheckRequest(plate=PLATES[0], date="2025-06-02", **{"zone": zone, **bad}))
        except grpc.RpcError as exc:
            errors.append(exc.details())  # type: ignore[attr-defined]
    assert len(errors) == 2
    server.settle()  # the last call's log line follows its answer
    audit_dir = server.app.config.audit_dir
    path = audit_dir / "audit-w0.jsonl"
    records = [r for _, r in audit.read_records(path)]
    assert [r["rpc"] for r in records] == ["Check"] * len(PLATES) + ["CheckStream"] * 2
    chunk_record, closing = records[-2:]
    assert (chunk_record["part"], closing["part"]) == ("chunk", "end")
    assert chunk_record["stream"] == closing["stream"]
    assert chunk_record["pairs"] == closing["pairs"] == len(stream_plates)
    assert closing["hash"] == answers[-1].summary.audit_id
    assert (closing["status"], closing["chunks"], closing["keys_count"]) == ("OK", 1, 0)
    assert "keys_file" in chunk_record and "keys" in records[0]
    assert served_problems(server, path) == []
    assert server.app.audit is not None
    assert server.app.audit.preallocate_bytes == server.app.config.audit_preallocate_mb * MIB
    checkpoints = "".join(p.read_text() for p in (audit_dir / "checkpoints").iterdir())
    assert '"records":' in checkpoints
    everything = path.read_text() + "\n".join(errors) + caplog.text + "".join(capsys.readouterr())
    everything += checkpoints
    for p in PLATES:
        assert p not in everything
        assert p.lower() not in everything


def test_windowed_sync_writes_every_record_before_returning(tmp_path: Path) -> None:
    log = _open_log(tmp_path, sync_window_s=0.005)
    _write(log, 3)
    # written before `record` returned: a killed process would lose none of them
    assert len(list(audit.read_records(log.path))) == 3
    log.close()
    assert _problems(log.path) == []
    again = _open_log(tmp_path, sync_window_s=0.005)  # a restart continues the chain
    _write(again, 1)
    again.close()
    assert _problems(again.path) == []
    assert [r["seq"] for _, r in audit.read_records(again.path)] == [1, 2, 3, 4]


def _seqs(path: Path) -> list[int]:
    return [int(r["seq"]) for _, r in audit.read_records(path)]


def _records_end(path: Path) -> int:
    return len(path.read_bytes().rstrip(b"\0"))


def test_fresh_log_ends_in_zero_padding(tmp_path: Path) -> None:
    log = _open_log(tmp_path, preallocate_bytes=64 * 1024)
    _write(log, 3)
    log.close()  # the padding stays: a closed file looks like a killed one
    data = log.path.read_bytes()
    end = _records_end(log.path)
    assert len(data) == 64 * 1024 > end
    assert data[end - 1 :] == b"\n" + bytes(len(data) - end)
    assert _seqs(log.path) == [1, 2, 3]
    assert _problems(log.path) == []
    key_file = audit_key_file(tmp_path)
    assert main(["verify-audit", str(log.path), "--audit-key-file", str(key_file)]) == 0


def test_small_chunks_extend_the_file_and_sync_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"fsync": 0, "fdatasync": 0, "elsewhere": 0}
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        calls["fsync" if fd == log._fd else "elsewhere"] += 1
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        calls["fdatasync" if fd == log._fd else "elsewhere"] += 1
        real_fdatasync(fd)

    log = _open_log(tmp_path, preallocate_bytes=1024)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    sizes = [log.path.stat().st_size]
    assert sizes == [1024]  # opening grew the file: the first call does not wait for it
    for i in range(50):  # lines of ~400 bytes, then of up to ~2 KiB: several chunks at once
        _write(log, 1, first=0 if i < 40 else 5 * i - 190)
        sizes.append(log.path.stat().st_size)
    monkeypatch.undo()
    log.close()
    assert calls["fdatasync"] == 50  # every record synced before `record` returned
    grew = [b - a for a, b in itertools.pairwise(sizes) if b != a]
    assert calls["fsync"] == len(grew)  # one fsync per extension, not per record
    assert calls["elsewhere"] <= 3  # checkpoints: after the first record, not per record
    assert 10 <= len(grew) < 40 and max(grew) > 1024 and all(g % 1024 == 0 for g in grew)
    assert 0 < sizes[-1] - _records_end(log.path) < 1024
    assert _seqs(log.path) == list(range(1, 51))
    assert _problems(log.path) == []


def test_reopened_padded_log_continues_the_chain(tmp_path: Path) -> None:
    first = _open_log(tmp_path, preallocate_bytes=64 * 1024)
    _write(first, 3)
    first.close()
    second = _open_log(tmp_path, preallocate_bytes=64 * 1024)
    _write(second, 2)
    second.close()
    assert second.path.stat().st_size == 64 * 1024  # written into the same zeros
    assert _seqs(second.path) == [1, 2, 3, 4, 5]
    assert _problems(second.path) == []


def test_old_unpadded_log_continues_the_chain(tmp_path: Path) -> None:
    first = _open_log(tmp_path)
    _write(first, 3)
    first.close()
    old = first.path.read_bytes().rstrip(b"\0")  # as the appending writer left it
    first.path.write_bytes(old)
    assert _problems(first.path) == []
    second = _open_log(tmp_path, preallocate_bytes=4096)
    _write(second, 2)
    second.close()
    assert second.path.read_bytes()[: len(old)] == old
    assert second.path.stat().st_size == len(old) + 4096
    assert _seqs(second.path) == [1, 2, 3, 4, 5]
    assert _problems(second.path) == []


@pytest.mark.parametrize("tail", ["padded", "unpadded", "hole"])
def test_torn_record_is_zeroed_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tail: str
) -> None:
    other = _open_log(tmp_path / "other")  # a long record to tear: longer than the next one
    _write(other, 1, first=39)
    other.close()
    long_line = other.path.read_bytes().rstrip(b"\0")
    first = _open_log(tmp_path, preallocate_bytes=4096)
    _write(first, 3)
    first.close()
    records = first.path.read_bytes()[: _records_end(first.path)]
    if tail == "padded":  # the write stopped part-way through the line
        torn = long_line[: len(long_line) * 2 // 3]
        first.path.write_bytes(records + torn + bytes(4096 - len(records) - len(torn)))
    elif tail == "unpadded":  # same, in a file of the appending writer
        torn = long_line[: len(long_line) * 2 // 3]
        first.path.write_bytes(records + torn)
    else:  # the line's end reached the disk, its first block did not
        torn = bytes(len(long_line) // 2) + long_line[len(long_line) // 2 :]
        first.path.write_bytes(records + torn + bytes(100))
    assert KEY_HEX.encode() in torn  # content the warning must not repeat
    assert any("truncated or edited" in p for p in _problems(first.path))
    caplog.set_level(logging.INFO, logger="lez.server")
    second = _open_log(tmp_path, preallocate_bytes=4096)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "lez.server"
    message = warnings[0].getMessage()
    assert f"dropped {len(torn.rstrip(bytes(1)))} bytes" in message
    assert f"offset {len(records)}" in message and "torn" in message
    assert KEY_HEX not in caplog.text and '"seq"' not in caplog.text
    _write(second, 1)
    second.close()
    data = second.path.read_bytes()
    assert data[: len(records)] == records
    assert _seqs(second.path) == [1, 2, 3, 4]
    assert _problems(second.path) == []
    assert not data[_records_end(second.path) :].strip(b"\0")
    caplog.clear()
    _open_log(tmp_path, preallocate_bytes=4096).close()  # nothing torn any more
    assert not caplog.records


def test_verify_rejects_data_after_the_padding(tmp_path: Path) -> None:
    log = _open_log(tmp_path, preallocate_bytes=4096)
    _write(log, 2)
    log.close()
    data = log.path.read_bytes()
    end = _records_end(log.path)
    first_line = data[: data.index(b"\n") + 1]
    log.path.write_bytes(data[:end] + bytes(100) + first_line + bytes(100))  # NULs, then data
    assert any("truncated or edited" in p for p in _problems(log.path))
    log.path.write_bytes(data[:end] + bytes(100) + b"\n" + first_line + bytes(100))
    assert any("after the zero padding" in p for p in _problems(log.path))
    log.path.write_bytes(data[:end] + bytes(100) + b"\n" + bytes(100))  # a line of NULs only
    assert _problems(log.path) == []


_WRITER = """
import sys
from pathlib import Path
from tests.server.test_audit import _open_log, _write
log = _open_log(Path(sys.argv[1]), preallocate_bytes=512, checkpoint_every_records=50)
while True:
    _write(log, 1)
    print(log._seq, flush=True)
"""


def test_killed_writer_loses_no_answered_record(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    answered = 0
    for line in proc.stdout:  # each printed seq was recorded before `record` returned
        answered = int(line)
        if answered >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    path = tmp_path / "audit-w0.jsonl"
    assert _problems(path) == []
    seqs = _seqs(path)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= answered
    again = _open_log(tmp_path, preallocate_bytes=512)
    _write(again, 1)
    again.close()
    assert _seqs(path)[-1] == len(seqs) + 1
    assert _problems(path) == []


def test_preallocate_setting(tmp_path: Path) -> None:
    assert parse_serve_args([], {}).audit_preallocate_mb == 8
    assert parse_serve_args(["--audit-preallocate-mb", "2"], {}).audit_preallocate_mb == 2
    env = {"LEZ_AUDIT_PREALLOCATE_MB": "3"}
    assert parse_serve_args([], env).audit_preallocate_mb == 3
    with pytest.raises(ValueError, match="audit_preallocate_mb"):
        parse_serve_args(["--audit-preallocate-mb", "0"], {})
    with pytest.raises(ValueError, match="preallocate_bytes"):
        _open_log(tmp_path, preallocate_bytes=0)


def test_a_stream_that_fails_after_answering_is_still_audited(
    server: ServerThread, channel: grpc.Channel
) -> None:
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    good = chunk(PLATES, [DAY] * len(PLATES), zone=zone)
    bad = chunk(PLATES, [DAY] * len(PLATES), zone=zone)
    bad.days = bad.days[:-1]  # a day column that does not divide into int32 days
    got = []
    with pytest.raises(grpc.RpcError) as failed:
        for msg in s.CheckStream(iter([good, bad])):
            got.append(msg)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = failed.value.details()  # type: ignore[attr-defined]
    assert details and not any(p in details for p in PLATES)  # raised after plates were read
    assert len(got) == 1 and len(got[0].outcome) == len(PLATES)  # the first chunk was answered
    path = server.app.config.audit_dir / "audit-w0.jsonl"
    answered, last = [r for _, r in audit.read_records(path)][-2:]
    assert (last["rpc"], last["part"], last["pairs"], last["status"]) == (
        "CheckStream",
        "end",
        len(PLATES),
        "INVALID_ARGUMENT",
    )
    assert (answered["part"], answered["keys_count"]) == ("chunk", len(PLATES))
    assert served_problems(server, path) == []


def test_a_call_finishing_after_close_is_refused_not_written(tmp_path: Path) -> None:
    """A cancelled call's cleanup may record after the server closed its log: the record is
    refused (the call is not answered), never written to a descriptor the process may have
    handed to another file or socket since."""
    log = _open_log(tmp_path)
    _write(log, 2)
    log.close()
    before = (tmp_path / log.path.name).read_bytes()
    with pytest.raises(AuditClosed):
        _write(log, 1, first=2)
    assert (tmp_path / log.path.name).read_bytes() == before
    assert _problems(tmp_path / log.path.name) == []
