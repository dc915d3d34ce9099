"""Refused attempts are on record: an unknown certificate, a role or a zone the caller lacks."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from server.audit import read_records
from server.config import ServerConfig
from tests.server.conftest import DAY, make_server, tls_channel, tls_settings
from tests.server.helpers import chunk, stub
from tests.server.test_audit import served_problems

CLIENTS = """
[[client]]
identity = "gent-enforcement"
organisation = "Stad Gent"
roles = ["enforcement"]
zones = ["{zone}"]

[[client]]
identity = "public-checker"
organisation = "Stad Gent website"
roles = ["public"]
"""


def _refused(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as exc:
        call()  # type: ignore[operator]
    return exc.value.code()  # type: ignore[attr-defined,no-any-return]


def test_refused_calls_are_audited(
    base_config: ServerConfig, cert_dir: Path, tmp_path: Path
) -> None:
    probe = make_server(base_config, audit_dir=tmp_path / "probe")
    try:
        with grpc.insecure_channel(probe.target) as ch:
            zones = [z.name for z in stub(ch).ServerInfo(pb.ServerInfoRequest()).zones]
    finally:
        probe.stop()
    assert len(zones) > 1
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS.format(zone=zones[0]))
    srv = make_server(
        base_config,
        **tls_settings(cert_dir, clients),
    )
    try:
        with tls_channel(cert_dir, srv.port, "stranger") as ch:
            assert (
                _refused(lambda: stub(ch).Check(pb.CheckRequest(plate="1ABC234", zone=zones[0])))
                == grpc.StatusCode.UNAUTHENTICATED
            )
        with tls_channel(cert_dir, srv.port, "public-checker") as ch:
            stream = chunk(["1ABC234"], [DAY], zone=zones[0])
            assert (
                _refused(lambda: list(stub(ch).CheckStream(iter([stream]))))
                == grpc.StatusCode.PERMISSION_DENIED
            )
        with tls_channel(cert_dir, srv.port, "gent-enforcement") as ch:
            s = stub(ch)
            assert (
                _refused(
                    lambda: s.Check(
                        pb.CheckRequest(plate="1ABC234", zone=zones[1], date="2025-06-02")
                    )
                )
                == grpc.StatusCode.PERMISSION_DENIED
            )
            s.Check(pb.CheckRequest(plate="1ABC234", zone=zones[0], date="2025-06-02"))
            assert (
                _refused(  # not a refusal: an unknown zone is a bad request, not recorded
                    lambda: s.Check(pb.CheckRequest(plate="1ABC234", zone="atlantis"))
                )
                == grpc.StatusCode.INVALID_ARGUMENT
            )
        path = srv.app.config.audit_dir / "audit-w0.jsonl"
        records = [r for _, r in read_records(path)]
        got = [
            (r["rpc"], r["identity"], r["organisation"], r["status"], r["pairs"]) for r in records
        ]
        assert got == [
            ("Check", "stranger", "", "UNAUTHENTICATED", 0),
            ("CheckStream", "public-checker", "Stad Gent website", "PERMISSION_DENIED", 0),
            ("Check", "gent-enforcement", "Stad Gent", "PERMISSION_DENIED", 0),
            ("Check", "gent-enforcement", "Stad Gent", "OK", 1),
        ]
        assert records[2]["roles"] == ["enforcement"] and records[0]["keys_count"] == 0
        assert "1ABC234" not in path.read_text()
        assert served_problems(srv, path) == []
    finally:
        srv.stop()
