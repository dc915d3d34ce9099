"""Mutual TLS: the certificate CN is the identity; unknown certificates are refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from server.config import ServerConfig
from tests.server.conftest import make_server, tls_channel, tls_settings
from tests.server.helpers import error_reason, stub

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
calls_per_minute = 100
"""


def test_mutual_tls_identities(base_config: ServerConfig, cert_dir: Path, tmp_path: Path) -> None:
    probe = make_server(base_config)
    try:
        with grpc.insecure_channel(probe.target) as ch:
            zones = [z.name for z in stub(ch).ServerInfo(pb.ServerInfoRequest()).zones]
    finally:
        probe.stop()
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS.format(zone=zones[0]))
    srv = make_server(
        base_config,
        **tls_settings(cert_dir, clients),
    )
    try:
        with tls_channel(cert_dir, srv.port, "gent-enforcement") as ch:
            info = stub(ch).ServerInfo(pb.ServerInfoRequest())
            assert info.client.organisation == "Stad Gent"
            assert list(info.client.roles) == [pb.ROLE_ENFORCEMENT]
            ok = stub(ch).Check(pb.CheckRequest(plate="1ABC234", zone=zones[0], date="2025-06-02"))
            assert ok.decision.HasField("technical")
            if len(zones) > 1:
                with pytest.raises(grpc.RpcError) as exc:
                    stub(ch).Check(pb.CheckRequest(plate="1ABC234", zone=zones[1]))
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        with tls_channel(cert_dir, srv.port, "public-checker") as ch:
            assert stub(ch).ServerInfo(pb.ServerInfoRequest()).client.calls_per_minute == 100
        with tls_channel(cert_dir, srv.port, "stranger") as ch:
            with pytest.raises(grpc.RpcError) as exc:
                stub(ch).ServerInfo(pb.ServerInfoRequest())
            assert error_reason(exc.value)[:2] == (
                grpc.StatusCode.UNAUTHENTICATED,
                "UNAUTHENTICATED",
            )
        with (
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as plain,
            pytest.raises(grpc.RpcError),
        ):
            stub(plain).ServerInfo(pb.ServerInfoRequest(), timeout=2)
    finally:
        srv.stop()
