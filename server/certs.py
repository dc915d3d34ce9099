"""Development certificates for mutual TLS: one CA, one server pair, client pairs.

`lez-server certs --out DIR` writes `ca.pem` (+ `ca.key`), `server.pem`/`server.key` (valid for
localhost, 127.0.0.1 and ::1 plus any extra host names) and one `<name>.pem`/`<name>.key` per
client, whose Common Name is the identity to list in the clients file. ECDSA P-256 keys,
private keys written with mode 0600. For development and tests only: production certificates
come from the organisations' PKI (the PKIoverheid/OIN model of docs/sources.md#woz-api). The
certificate making itself is `lez.certs`, shared with the DIV stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from lez.certs import write_dev_set

DEFAULT_CLIENTS: Final = (
    "dev-operator",
    "gent-enforcement",
    "public-checker",
    "brussels-integrator",
)
"""One client per kind of user: to list in a clients file with the matching role."""


def write_dev_certs(
    out: Path, *, clients: Sequence[str] = DEFAULT_CLIENTS, hosts: Sequence[str] = ()
) -> list[Path]:
    """Write a CA, a server pair and client pairs into `out`; returns the files written."""
    return write_dev_set(out, server_cn="lez-server", clients=clients, hosts=hosts)
