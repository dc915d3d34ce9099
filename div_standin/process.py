"""Start the stand-in as a real process for tests and demos, and stop it again.

`running_standin(feed_dir, certs_dir)` runs `python -m div_standin serve` on a free port of
127.0.0.1, waits until it completes a mutual-TLS handshake, yields a `StandinHandle` (its URL,
the CA and client certificate paths, a ready `ssl.SSLContext`, and `arm_faults` for the control
endpoint) and terminates the process on exit. Tests of the feed client use it so they talk to
the same server, over the same sockets, as a demo does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lez.errors import StandinError

START_SECONDS: Final = 30.0
STOP_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class StandinHandle:
    """A running stand-in: where it listens and what a client needs to reach it."""

    url: str
    port: int
    ca: Path
    client_cert: Path
    client_key: Path
    process: subprocess.Popen[bytes]

    def ssl_context(self) -> ssl.SSLContext:
        """Client TLS: trusts the development CA and presents the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def arm_faults(
        self, faults: Sequence[Mapping[str, Any]], *, replace: bool = False
    ) -> list[dict[str, Any]]:
        """Arm faults through `POST /_standin/faults`; returns the armed list."""
        body = json.dumps({"faults": list(faults), "replace": replace}).encode()
        return self._control("POST", body)

    def clear_faults(self) -> None:
        self._control("DELETE", b"")

    def _control(self, method: str, body: bytes) -> list[dict[str, Any]]:

        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ssl_context(), timeout=10
        )
        try:
            conn.request(
                method, "/_standin/faults", body=body, headers={"Content-Type": "application/json"}
            )
            answer = conn.getresponse()
            payload = json.loads(answer.read())
        finally:
            conn.close()
        if answer.status != 200:
            raise StandinError(f"the stand-in refused the faults: {payload.get('message')}")
        return list(payload["faults"])


@contextlib.contextmanager
def running_standin(
    feed_dir: Path,
    certs_dir: Path,
    faults: Sequence[str] = (),
    *,
    client: str = "client",
    log: Path | None = None,
) -> Iterator[StandinHandle]:
    """Run `lez-div serve` on a free port until the block ends. `faults` are `--fault` options
    (`"503:2"`, `"drop"`); `log` receives the server's output (default: discarded)."""
    with tempfile.TemporaryDirectory(prefix="lez-div-") as tmp:
        port_file = Path(tmp) / "port"
        command = [
            sys.executable,
            "-m",
            "div_standin",
            "serve",
            "--feed",
            str(feed_dir),
            "--certs",
            str(certs_dir),
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ]
        for fault in faults:
            command += ["--fault", fault]
        sink = open(log, "ab") if log else open(Path(tmp) / "log", "ab")  # noqa: SIM115
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            port = _wait_for_port(process, port_file)
            handle = StandinHandle(
                url=f"https://127.0.0.1:{port}",
                port=port,
                ca=certs_dir / "ca.pem",
                client_cert=certs_dir / f"{client}.pem",
                client_key=certs_dir / f"{client}.key",
                process=process,
            )
            _wait_for_tls(handle, process)
            yield handle
        finally:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            sink.close()


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path) -> int:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StandinError(f"the stand-in exited with status {process.returncode} at start")
        if port_file.exists():
            return int(port_file.read_text())
        time.sleep(0.05)
    raise StandinError(f"the stand-in wrote no port within {START_SECONDS:.0f} s")


def _wait_for_tls(handle: StandinHandle, process: subprocess.Popen[bytes]) -> None:
    context = handle.ssl_context()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StandinError(f"the stand-in exited with status {process.returncode} at start")
        try:
            with (
                socket.create_connection(("127.0.0.1", handle.port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            time.sleep(0.05)
    raise StandinError(f"the stand-in accepted no TLS connection within {START_SECONDS:.0f} s")
