"""The audit secret: it keys the audit chain (HMAC-SHA256) and signs its checkpoints (Ed25519).

The audit log must hold against someone who can edit its files. A plain hash chain does not:
whoever edits a record can recompute every hash after it. So each record's hash is an HMAC under
a secret the editor does not have, and the chain's head is signed at intervals (see
`server.audit_checkpoints`). One 32-byte secret in a key file (mode 0600, like the plate HMAC
key of `lez.keys`, but a *different* secret) gives both keys, derived with HMAC and fixed labels:
the chain key and the Ed25519 signing key. The file never leaves the server and the verifier;
the checkpoints carry only the public key's fingerprint.

`ensure_audit_key_file` creates the file on a server's first start (atomically: concurrent
workers end with the same secret); a log chained with another key is refused when it is opened
(`server.audit`), so a wrong path cannot silently start a second chain.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lez.durable_io import fsync_dir
from lez.errors import AuditKeyError

AUDIT_KEY_HEADER: Final = "lez-audit-key-v1"
PLATE_KEY_HEADER: Final = "lez-hmac-key-v1"
SECRET_BYTES: Final = 32
_CHAIN_LABEL: Final = b"lez-audit-chain-v1"
_SIGNING_LABEL: Final = b"lez-audit-checkpoint-v1"
_SHA256_BLOCK: Final = 64


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """The keys derived from one audit secret. Build with `load_audit_keys` or `from_secret`."""

    key_id: str
    """Fingerprint of the secret (safe to write into records and checkpoints)."""
    _chain_key: bytes = field(repr=False)
    signing_key: Ed25519PrivateKey = field(repr=False)
    # HMAC's inner and outer SHA-256 states after the padded key, copied per record (as in
    # `lez.keys`): a record's MAC then costs about 1 us instead of 2.5 us with `hmac.digest`.
    _inner: Any = field(repr=False, default=None)
    _outer: Any = field(repr=False, default=None)

    @classmethod
    def from_secret(cls, secret: bytes) -> AuditKeys:
        if len(secret) < 16:
            raise AuditKeyError(
                "the audit secret must be at least 16 bytes; run `lez-server audit keygen`"
            )
        chain_key = hmac.digest(secret, _CHAIN_LABEL, "sha256")
        seed = hmac.digest(secret, _SIGNING_LABEL, "sha256")
        padded = chain_key.ljust(_SHA256_BLOCK, b"\0")  # 32 bytes: shorter than a block
        return cls(
            key_id=hashlib.sha256(b"lez-audit-key-id\x00" + secret).hexdigest()[:16],
            _chain_key=chain_key,
            signing_key=Ed25519PrivateKey.from_private_bytes(seed),
            _inner=hashlib.sha256(bytes(b ^ 0x36 for b in padded)),
            _outer=hashlib.sha256(bytes(b ^ 0x5C for b in padded)),
        )

    @property
    def chain(self) -> str:
        """The value of a keyed record's `chain` field: algorithm and key fingerprint."""
        return f"hmac-sha256:{self.key_id}"

    def mac(self, body: bytes) -> str:
        """HMAC-SHA256 of a record's canonical body under the chain key, in hex."""
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return str(outer.hexdigest())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def signer_id(self) -> str:
        """Fingerprint of the checkpoint signing key (SHA-256 of its raw public bytes)."""
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:16]


def _key_file_text(secret: bytes) -> bytes:
    return f"{AUDIT_KEY_HEADER}\n{secret.hex()}\n".encode()


def generate_audit_key_file(path: Path) -> str:
    """Write a new random audit secret to `path` (mode 0600, refuses to overwrite); its key id."""
    secret = secrets.token_bytes(SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AuditKeyError(f"{path} exists; remove it first or choose another path") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(_key_file_text(secret))
        fh.flush()
        os.fsync(fh.fileno())
    return AuditKeys.from_secret(secret).key_id


def ensure_audit_key_file(path: Path) -> bool:
    """Create the audit key file if it does not exist; True when this call created it.

    The secret is written to a private temporary file and linked into place, so processes
    starting together never read a half-written file and all end up with the same secret."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_key_file_text(secrets.token_bytes(SECRET_BYTES)))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_audit_keys(path: Path) -> AuditKeys:
    """Read an audit key file written by `generate_audit_key_file` or `ensure_audit_key_file`."""
    try:
        words = path.read_text().split()
    except OSError as exc:
        raise AuditKeyError(
            f"cannot read audit key file {path}: {exc.strerror}; give the audit key the log was "
            "written with (--audit-key-file), or create one with `lez-server audit keygen`"
        ) from None
    if words[:1] == [PLATE_KEY_HEADER]:
        raise AuditKeyError(
            f"{path} is the plate HMAC key; the audit chain needs a secret of its own: "
            "`lez-server audit keygen --out FILE`, then --audit-key-file FILE"
        )
    if len(words) != 2 or words[0] != AUDIT_KEY_HEADER:
        raise AuditKeyError(f"{path} is not a lez audit key file (expected {AUDIT_KEY_HEADER})")
    try:
        secret = bytes.fromhex(words[1])
    except ValueError:
        raise AuditKeyError(f"{path}: the audit secret is not hexadecimal") from None
    return AuditKeys.from_secret(secret)
