"""The audit chain: every consultation recorded, tampering detected, never a raw plate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from server import audit
from server.__main__ import main
from server.audit import AuditLog, KeyBatch
from tests.server.conftest import DAY, VEHICLES, ServerThread
from tests.server.helpers import chunk, stub

PLATES = [v.plate for v in VEHICLES] + ["9ZZZ999"]


def _write(log: AuditLog, n: int) -> None:
    for i in range(n):
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
    log = AuditLog(tmp_path, inline_keys=2)
    _write(log, 4)
    log.close()
    path = tmp_path / "audit-w0.jsonl"
    assert audit.verify(path) == []
    assert main(["verify-audit", str(path)]) == 0
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["pairs"] = 999
    tampered = [*lines[:1], json.dumps(rec), *lines[2:]]
    path.write_text("\n".join(tampered) + "\n")
    assert any("does not match its hash" in p for p in audit.verify(path))
    assert main(["verify-audit", str(path)]) == 1
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # a record removed
    assert any("chain broken" in p for p in audit.verify(path))


def test_sidecar_keys_are_covered(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, inline_keys=1)
    _write(log, 3)
    log.close()
    path = tmp_path / "audit-w0.jsonl"
    assert audit.verify(path) == []
    sidecar = next((tmp_path / "audit-w0-keys").iterdir())
    sidecar.write_bytes(b"\0" * 16 + sidecar.read_bytes()[16:])
    assert any("do not match their digest" in p for p in audit.verify(path))


def test_chain_continues_after_restart(tmp_path: Path) -> None:
    first = AuditLog(tmp_path)
    _write(first, 2)
    first.close()
    second = AuditLog(tmp_path)
    _write(second, 2)
    second.close()
    assert audit.verify(tmp_path / "audit-w0.jsonl") == []


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
    audit_dir = server.app.config.audit_dir
    path = audit_dir / "audit-w0.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["rpc"] for r in records] == ["Check"] * len(PLATES) + ["CheckStream"]
    assert records[-1]["pairs"] == len(stream_plates)
    assert records[-1]["hash"] == answers[-1].summary.audit_id
    assert "keys_file" in records[-1] and "keys" in records[0]
    assert audit.verify(path) == []
    everything = path.read_text() + "\n".join(errors) + caplog.text + "".join(capsys.readouterr())
    for p in PLATES:
        assert p not in everything
        assert p.lower() not in everything


def test_windowed_sync_writes_every_record_before_returning(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, sync_window_s=0.005)
    _write(log, 3)
    # written before `record` returned: a killed process would lose none of them
    lines = log.path.read_bytes().splitlines()
    assert len(lines) == 3
    log.close()
    assert audit.verify(log.path) == []
    again = AuditLog(tmp_path, sync_window_s=0.005)  # a restart continues the chain
    _write(again, 1)
    again.close()
    assert audit.verify(again.path) == []
    assert json.loads(again.path.read_bytes().splitlines()[-1])["seq"] == 4
