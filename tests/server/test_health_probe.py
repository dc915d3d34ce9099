"""`lez-server health`: the container probes' view of a server (ready = SERVING, live = any
answer), in plain TCP and over mutual TLS with a certificate that has no role."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.__main__ import main
from server.config import ServerConfig
from tests.server.conftest import make_server, tls_settings
from tests.support.net import free_port


def _probe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["health", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_serving_server_is_ready_and_live(
    base_config: ServerConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = make_server(base_config)
    try:
        assert _probe(capsys, "--address", srv.target) == (0, f"{srv.target}: SERVING\n")
        assert _probe(capsys, "--address", srv.target, "--live")[0] == 0
    finally:
        srv.stop()


def test_a_server_without_a_store_is_live_but_not_ready(
    base_config: ServerConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    srv = make_server(base_config, store_root=tmp_path / "empty")
    try:
        assert _probe(capsys, "--address", srv.target) == (1, f"{srv.target}: NOT_SERVING\n")
        assert _probe(capsys, "--address", srv.target, "--live")[0] == 0
    finally:
        srv.stop()


def test_nothing_listening_is_neither(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    for extra in ((), ("--live",)):
        code, text = _probe(capsys, "--address", address, "--timeout", "1", *extra)
        assert code == 1 and "no answer" in text


def test_over_mutual_tls_with_a_probe_certificate_and_options_from_the_environment(
    base_config: ServerConfig,
    cert_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text('[[client]]\nidentity = "dev-operator"\norganisation = "Ops"\n'
                       'roles = ["operator"]\n')  # fmt: skip
    srv = make_server(
        base_config,
        **tls_settings(cert_dir, clients),
    )
    try:
        address = f"127.0.0.1:{srv.port}"
        assert _probe(capsys, "--address", address, "--timeout", "2")[0] == 1  # no certificate
        monkeypatch.setenv("LEZ_PROBE_TLS_CA", str(cert_dir / "ca.pem"))
        monkeypatch.setenv("LEZ_PROBE_TLS_CERT", str(cert_dir / "stranger.pem"))  # no role
        monkeypatch.setenv("LEZ_PROBE_TLS_KEY", str(cert_dir / "stranger.key"))
        monkeypatch.setenv("LEZ_PROBE_SERVER_NAME", "localhost")
        assert _probe(capsys, "--address", address) == (0, f"{address}: SERVING\n")
    finally:
        srv.stop()


def test_half_a_tls_setup_is_a_usage_error(
    cert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = _probe(capsys, "--tls-ca", str(cert_dir / "ca.pem"))
    assert code == 2 and "needs all of" in text
