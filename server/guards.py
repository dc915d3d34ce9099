"""Process safety of a server: one server per port, one per audit directory, and workers that
never outlive their supervisor.

- **Port.** Workers share their port with SO_REUSEPORT, which also lets a second server of the
  same user bind the same port and silently take half the connections. `ensure_port_free` binds
  the port *without* SO_REUSEPORT first (SO_REUSEADDR only, so connections of a previous server
  in TIME_WAIT do not count): that fails while any process listens there.
- **Audit directory.** Two servers appending to the same `audit-w<N>.jsonl` would interleave
  two chains in one file. `hold_audit_dir` takes an exclusive `flock` on `server.lock` in the
  directory for the server's life (forked workers inherit it, so it is held until the last
  process of the server is gone) and writes the holder's pid there for the message.
- **Orphans.** A worker whose supervisor was killed (SIGKILL, OOM) would keep serving with no
  one to restart or stop it, and keep the port and the audit lock. `ParentWatch` gives each
  worker two ways to notice: on Linux the kernel sends SIGTERM when the parent dies
  (`prctl(PR_SET_PDEATHSIG)`), and everywhere a pipe whose write end only the supervisor holds
  reads end-of-file when it dies; the worker then stops gracefully and, if that takes longer
  than its grace period, exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from lez.errors import ServerStartRefused

log = logging.getLogger("lez.server")

LOCK_NAME: Final = "server.lock"
PR_SET_PDEATHSIG: Final = 1


def ensure_port_free(host: str, port: int) -> None:
    """Raise ServerStartRefused when another process already listens on host:port."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise ServerStartRefused(
                f"port {port} on {host} is already served by another process; stop that "
                "server, or give this one another --address"
            ) from None


@contextlib.contextmanager
def hold_audit_dir(directory: Path) -> Iterator[Path]:
    """Hold an exclusive lock on the audit directory until the block ends; yields the lock
    file. Raises ServerStartRefused when another server holds it."""
    path = directory / LOCK_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ServerStartRefused(
            f"cannot use audit directory {directory}: {exc.strerror}; give --audit-dir a "
            "directory this server can create and write"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ServerStartRefused(
                f"audit directory {directory} is in use by another server (pid {holder}); stop "
                "that server, or give this one another --audit-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


class ParentWatch:
    """Made by the supervisor before forking; `arm` in each worker right after the fork."""

    def __init__(self) -> None:
        self.parent_pid = os.getpid()
        self._read_fd, self._write_fd = os.pipe()

    def arm(self, *, grace_s: float) -> None:
        """In a freshly forked worker: stop (SIGTERM to itself) when the supervisor dies, and
        exit if stopping takes longer than `grace_s`."""
        os.close(self._write_fd)  # only the supervisor may hold it, or EOF never comes
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        threading.Thread(
            target=self._watch, args=(grace_s,), name="parent-watch", daemon=True
        ).start()
        if os.getppid() != self.parent_pid:  # died before the watch was armed
            os.kill(os.getpid(), signal.SIGTERM)

    def _watch(self, grace_s: float) -> None:
        while True:
            try:
                if not os.read(self._read_fd, 1):  # EOF: the supervisor's end is closed
                    break
            except InterruptedError:
                continue
        log.error("supervisor (pid %d) is gone: worker %d stopping", self.parent_pid, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        log.error(
            "worker %d did not stop within %.1f s of its supervisor: exiting", os.getpid(), grace_s
        )
        logging.shutdown()
        os._exit(1)

    def close(self) -> None:
        """In the supervisor when it stops."""
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
