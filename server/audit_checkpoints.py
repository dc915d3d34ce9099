"""Signed checkpoints of an audit file's chain head (after Certificate Transparency's signed
tree heads, RFC 6962 section 3.5).

A keyed chain (`server.audit_keys`) stops an editor without the secret from rewriting records,
but not from cutting records off the end or emptying the file: what remains is still a valid
chain. A checkpoint closes that gap. It states, for one audit file, how many records the file
held (`records`, CT's tree size) and the hash of the last one (`head`, CT's root hash) at a time
(`ts`), and is signed with the Ed25519 key derived from the audit secret. A file that later
holds fewer records than a checkpoint, or a different record at that position, has been cut or
rewritten.

The writer (`server.audit.AuditLog`) appends one checkpoint line per interval (records and/or
seconds), when a file is opened and when it is closed, to `<checkpoint dir>/<file stem>.
checkpoints.jsonl`, fsynced. Checkpoints are never written on a record's hot path. The directory
is meant to be copied off the machine (rsync, a log shipper): verification against a copy taken
before an intrusion holds even if the intruder had the secret or deleted the local checkpoints.

The signed bytes are a fixed label and the canonical JSON of every field but `signature`, so a
checkpoint cannot be moved to another file (the name is signed) or another key (the key ids are
signed).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lez.durable_io import fsync_dir
from server.audit_keys import AuditKeys

SIGNED_LABEL: Final = b"lez-audit-checkpoint-v1\n"
CHECKPOINTS_SUFFIX: Final = ".checkpoints.jsonl"
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed statement: `file` held `records` records ending in `head` at `ts`."""

    file: str
    """Name of the audit file (`audit-w0.jsonl`)."""
    records: int
    """How many records the file held (the `seq` of the last one)."""
    head: str
    """The `hash` of record number `records` (the chain's keyed head)."""
    ts: str
    """When the checkpoint was signed (UTC, ISO 8601)."""
    chain: str
    """The `chain` field of the file's keyed records (algorithm and audit key id)."""
    signer: str
    """Fingerprint of the Ed25519 public key that signed it."""
    signature: str = ""
    """Base64 Ed25519 signature over `SIGNED_LABEL` + the canonical JSON of the other fields."""

    def signed_bytes(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k != "signature"}
        return SIGNED_LABEL + _CANONICAL.encode(fields).encode()

    def to_line(self) -> bytes:
        return _CANONICAL.encode(asdict(self)).encode() + b"\n"

    def signature_valid(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True


def sign_checkpoint(
    keys: AuditKeys, *, file: str, records: int, head: str, now: dt.datetime | None = None
) -> Checkpoint:
    """A checkpoint of `file` at `records` records with head `head`, signed with `keys`."""
    unsigned = Checkpoint(
        file=file,
        records=records,
        head=head,
        ts=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds"),
        chain=keys.chain,
        signer=keys.signer_id,
    )
    signature = keys.signing_key.sign(unsigned.signed_bytes())
    return Checkpoint(**{**asdict(unsigned), "signature": base64.b64encode(signature).decode()})


def checkpoints_path(directory: Path, audit_file: str) -> Path:
    """Where the checkpoints of `audit_file` live in a checkpoint directory."""
    return directory / (Path(audit_file).stem + CHECKPOINTS_SUFFIX)


class CheckpointFile:
    """Appends checkpoints of one audit file, each line fsynced; thread-safe."""

    def __init__(self, directory: Path, audit_file: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = checkpoints_path(directory, audit_file)
        self._lock = threading.Lock()
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if created:  # the new name must survive a crash too
            fsync_dir(directory)

    def append(self, checkpoint: Checkpoint) -> None:
        line = checkpoint.to_line()
        with self._lock:
            written = os.write(self._fd, line)
            if written != len(line):  # O_APPEND writes of a few hundred bytes are whole
                raise OSError(f"short write to {self.path}")
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True, slots=True)
class CheckpointLine:
    """A checkpoint as read back, or why its line could not be read."""

    lineno: int
    checkpoint: Checkpoint | None
    problem: str = ""


def read_checkpoints(path: Path) -> Iterator[CheckpointLine]:
    """Every line of a checkpoints file, parsed (signatures are checked by the verifier)."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                checkpoint = Checkpoint(
                    file=str(data["file"]),
                    records=int(data["records"]),
                    head=str(data["head"]),
                    ts=str(data["ts"]),
                    chain=str(data["chain"]),
                    signer=str(data["signer"]),
                    signature=str(data["signature"]),
                )
            except (ValueError, KeyError, TypeError):
                yield CheckpointLine(lineno, None, "not a checkpoint (truncated or edited)")
                continue
            yield CheckpointLine(lineno, checkpoint)


def last_checkpoint(path: Path) -> Checkpoint | None:
    """The last readable checkpoint of a checkpoints file (None when there is none)."""
    if not path.exists():
        return None
    found = None
    for line in read_checkpoints(path):
        if line.checkpoint is not None:
            found = line.checkpoint
    return found
