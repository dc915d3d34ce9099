"""Verification of audit files against their keyed chain and their signed checkpoints.

`verify_file` walks one audit file record by record (format, `seq`, `prev`, the keyed hash, the
consulted keys, inline or in key logs) and then holds it against every signed checkpoint of that
file (`server.audit_checkpoints`): each checkpoint says the file held `records` records ending in
`head`. Together they name each kind of damage:

- a byte flipped, a record edited: the record no longer matches its keyed hash;
- a record deleted, inserted or reordered in the middle: the chain (`prev`) and `seq` break;
- records cut off the end: the file holds fewer records than a checkpoint covers;
- the file emptied or deleted: no records, though a checkpoint covers some;
- a record edited and the whole chain recomputed (keyed or not): the record at a checkpoint's
  position is not the head it signed, and the recomputed hashes do not match the keyed ones;
- a checkpoint forged or edited: its signature does not verify with the audit key;
- a rotated file deleted from the middle of a series: the next file does not continue the
  chain where the one before it ended;
- the oldest files of a series deleted: the series starts after record 1, and no retention
  record (`AuditRetention`, written by the server before its retention removes files) says
  they were removed.

A series (`audit-w<N>`: the rotated files `audit-w<N>.<first seq>.jsonl`, then the active
`audit-w<N>.jsonl`) is verified as one chain: naming any of its files verifies all of them.

Records written before the chain was keyed (legacy) are accepted only where keyed records
follow and anchor them; a file that is legacy throughout cannot be vouched for, and the message
says how to bring it under a keyed chain. Problems make `lez-server verify-audit` exit 1; notes
(what is not yet covered by a checkpoint, legacy records anchored) are printed but do not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.audit import (
    CHECKPOINTS_DIR,
    GENESIS,
    RETENTION_RPC,
    data_after,
    is_padding,
    keys_digest,
    record_body,
    series_files,
    series_of,
)
from server.audit_checkpoints import (
    CHECKPOINTS_SUFFIX,
    Checkpoint,
    checkpoints_path,
    read_checkpoints,
)
from server.audit_key_log import named_keys
from server.audit_keys import AuditKeys

AUDIT_GLOB = "audit-w*.jsonl"


@dataclass(slots=True)
class FileVerdict:
    """What verification found in one audit file."""

    name: str
    records: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _Walk:
    """The state of a walk over one file's records."""

    records: int = 0
    files: int = 0
    first_seq: int = 0  # seq of the series' first record present (1 unless files were removed)
    last_seq: int = 0  # seq of the last record read
    legacy: int = 0  # unkeyed records before the first keyed one
    keyed: int = 0
    readable: bool = True  # False: the walk stopped at a line it could not read
    heads: dict[int, str] = field(default_factory=dict)  # record number -> its hash (wanted ones)
    removed_through: set[int] = field(default_factory=set)  # retention records' last removed seq


def default_checkpoint_dir(audit_file: Path) -> Path:
    """The checkpoint directory a server writes by default: beside the audit files."""
    return audit_file.parent / CHECKPOINTS_DIR


def audit_files(targets: Iterable[Path], checkpoint_dir: Path | None = None) -> list[Path]:
    """Audit files named, or one per series found in directories (the active file's path, which
    stands for the series); for a directory also the series that have checkpoints but no files
    any more (so a deleted series is reported)."""
    found: list[Path] = []
    for target in targets:
        if not target.is_dir():
            found.append(target)
            continue
        names = {
            f"{series}.jsonl" for p in target.glob(AUDIT_GLOB) if (series := series_of(p.name))
        }
        cp_dir = checkpoint_dir or target / CHECKPOINTS_DIR
        names |= {
            p.name[: -len(CHECKPOINTS_SUFFIX)] + ".jsonl"
            for p in cp_dir.glob("audit-w*" + CHECKPOINTS_SUFFIX)
        }
        found.extend(target / n for n in sorted(names))
    return found


def verify_file(
    path: Path, keys: AuditKeys | None, checkpoint_dir: Path | None = None
) -> FileVerdict:
    """Check one audit series' chain, consulted keys and checkpoints (`path`: any file of it; `keys`
    None: no audit key given, then keyed records and checkpoints are reported as
    unverifiable)."""
    series = series_of(path.name)
    files = series_files(path.parent, series) if series is not None else []
    if series is None and path.exists():
        files = [path]
    name = f"{series}.jsonl" if series is not None else path.name
    path = path.parent / name
    verdict = FileVerdict(name)
    cp_dir = checkpoint_dir or default_checkpoint_dir(path)
    cp_path = checkpoints_path(cp_dir, name)
    checkpoints = _read_checkpoints(cp_path, name, keys, verdict)
    wanted = {cp.records for cp in checkpoints}
    if not files:
        walk = _Walk()
        if not checkpoints:
            verdict.problems.append(f"{path}: no such audit file, and no checkpoint of it")
            return verdict
    else:
        walk = _walk(files, keys, wanted, verdict)
    verdict.records = walk.records
    _first_files(name, walk, verdict)
    _against_checkpoints(path, walk, checkpoints, cp_path, verdict)
    anchored = walk.keyed > 0 or any(cp.records >= walk.legacy for cp in checkpoints)
    if walk.legacy and not anchored:
        verdict.problems.append(
            f"{path.name}: written before keyed audit chains (its {walk.records} records carry "
            "an unkeyed SHA-256 chain and no signed checkpoint covers them): anyone able to edit "
            "it could recompute that chain, so it cannot be vouched for. Keep a copy of the file "
            "as it is now, and start the server on this audit directory with an audit key "
            "(--audit-key-file): it signs a checkpoint of the file at once and continues it "
            "with keyed records, which anchor these records from then on"
        )
    elif walk.legacy:
        verdict.notes.append(
            f"{path.name}: records 1-{walk.legacy} were written before keyed audit chains; "
            "signed checkpoints and the keyed records after them anchor them"
        )
    if walk.files > 1:
        verdict.notes.append(f"{path.name}: {walk.records} records in {walk.files} files")
    return verdict


def _first_files(name: str, walk: _Walk, verdict: FileVerdict) -> None:
    """A series that starts after record 1 lost its first files: to retention (a retention
    record says so) or to someone who deleted them."""
    if walk.first_seq <= 1:
        return
    span = _records(1, walk.first_seq - 1)
    if walk.first_seq - 1 in walk.removed_through:
        verdict.notes.append(f"{name}: {span} removed by retention (its record says so)")
    else:
        verdict.problems.append(
            f"{name}: {span} missing: the series' first file(s) were deleted, and no retention "
            "record says they were removed"
        )


def _read_checkpoints(
    cp_path: Path, name: str, keys: AuditKeys | None, verdict: FileVerdict
) -> list[Checkpoint]:
    """The file's checkpoints whose signature verifies; the others are problems."""
    if not cp_path.exists():
        return []
    good: list[Checkpoint] = []
    for line in read_checkpoints(cp_path):
        where = f"{cp_path.name}:{line.lineno}"
        cp = line.checkpoint
        if cp is None:
            verdict.problems.append(f"{where}: {line.problem}")
        elif keys is None:
            verdict.problems.append(
                f"{where}: cannot check the checkpoint's signature without the audit key; give "
                "--audit-key-file"
            )
            return []
        elif cp.signer != keys.signer_id or not cp.signature_valid(keys.public_key):
            verdict.problems.append(
                f"{where}: the checkpoint's signature does not verify with the audit key "
                "(forged or edited, or signed with another audit key)"
            )
        elif cp.file != name:
            verdict.problems.append(
                f"{where}: the checkpoint is of {cp.file}, not {name} (moved between files)"
            )
        else:
            good.append(cp)
    return good


def _walk(
    files: Sequence[Path], keys: AuditKeys | None, wanted: set[int], verdict: FileVerdict
) -> _Walk:
    walk = _Walk()
    prev, seq = GENESIS, 0
    no_key_reported = False
    for index, path in enumerate(files):
        walk.files += 1
        first_of_file = True
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                where = f"{path.name}:{lineno}"
                if is_padding(raw):  # the zeros ahead of the next record: nothing may follow
                    if data_after(fh):
                        verdict.problems.append(f"{where}: data after the zero padding (edited)")
                        walk.readable = False
                    break
                try:
                    rec = json.loads(raw)  # a NUL anywhere in a record fails here
                except ValueError:
                    verdict.problems.append(f"{where}: not a JSON record (truncated or edited)")
                    walk.readable = False
                    break
                if not isinstance(rec, dict) or "hash" not in rec:
                    verdict.problems.append(f"{where}: not an audit record")
                    walk.readable = False
                    break
                walk.records += 1
                chain = rec.get("chain")
                if chain is None:
                    if walk.keyed:
                        verdict.problems.append(
                            f"{where}: an unkeyed record after keyed ones (replaced or forged)"
                        )
                    else:
                        walk.legacy += 1
                    if hashlib.sha256(record_body(rec)).hexdigest() != rec["hash"]:
                        verdict.problems.append(f"{where}: record content does not match its hash")
                else:
                    walk.keyed += 1
                    if keys is None:
                        if not no_key_reported:
                            verdict.problems.append(
                                f"{where}: the records are chained with audit key "
                                f"{str(chain).split(':')[-1]}; give --audit-key-file to check them"
                            )
                            no_key_reported = True
                    elif chain != keys.chain:
                        verdict.problems.append(
                            f"{where}: chained with audit key {str(chain).split(':')[-1]}, the "
                            f"key file gives {keys.key_id}; give the audit key the log was "
                            "written with"
                        )
                        walk.readable = False
                        break
                    elif keys.mac(record_body(rec)) != rec["hash"]:
                        verdict.problems.append(
                            f"{where}: record content does not match its keyed hash (edited, or "
                            "re-chained without the audit secret)"
                        )
                this_seq = _int_or(rec.get("seq"), seq + 1)
                if walk.records == 1:
                    walk.first_seq = this_seq
                    if this_seq > 1:  # the first files are gone: `_first_files` says how
                        prev, seq = str(rec.get("prev")), this_seq - 1
                if first_of_file and index > 0 and this_seq != seq + 1:
                    verdict.problems.append(
                        f"{where}: {_records(seq + 1, this_seq - 1)} missing between "
                        f"{files[index - 1].name} and {path.name}: a file of the series was "
                        "deleted"
                    )
                else:
                    if rec.get("prev") != prev:
                        verdict.problems.append(
                            f"{where}: chain broken (its prev is not the hash of the record "
                            "before: a record was removed, inserted or reordered)"
                        )
                    if rec.get("seq") != seq + 1:
                        verdict.problems.append(
                            f"{where}: sequence {rec.get('seq')} after {seq} (records missing "
                            "or moved)"
                        )
                first_of_file = False
                verdict.problems.extend(_verify_keys(path.parent, rec, where))
                if rec.get("rpc") == RETENTION_RPC and "removed_through_seq" in rec:
                    walk.removed_through.add(_int_or(rec.get("removed_through_seq"), -1))
                if this_seq in wanted:
                    walk.heads[this_seq] = str(rec["hash"])
                prev, seq = str(rec["hash"]), this_seq
                walk.last_seq = seq
        if not walk.readable:
            break
    return walk


def _against_checkpoints(
    path: Path,
    walk: _Walk,
    checkpoints: Sequence[Checkpoint],
    cp_path: Path,
    verdict: FileVerdict,
) -> None:
    name = path.name
    if not checkpoints:
        if walk.keyed:
            verdict.problems.append(
                f"{name}: no signed checkpoint in {cp_path.parent}: records cut off the end or "
                "an emptied file cannot be ruled out; give --checkpoints DIR with the copy of the "
                "checkpoints taken off the machine"
            )
        return
    furthest = max(checkpoints, key=lambda cp: cp.records)
    if furthest.records > walk.last_seq:  # the furthest checkpoint implies the nearer ones
        _report_lost_records(path, walk, furthest, verdict)
    for cp in checkpoints:
        if cp.records < walk.first_seq:  # its records are gone: `_first_files` says how
            continue
        if cp.records <= walk.last_seq and walk.heads.get(cp.records) != cp.head:
            verdict.problems.append(
                f"{name}: record {cp.records} is not the head signed at {cp.ts}: the records up "
                "to it were edited and re-chained, or replaced"
            )
    last = max(cp.records for cp in checkpoints)
    if walk.last_seq > last:
        verdict.notes.append(
            f"{name}: {_span(last + 1, walk.last_seq)} written after the last checkpoint: "
            "chained, not yet covered by a signature"
        )


def _report_lost_records(path: Path, walk: _Walk, cp: Checkpoint, verdict: FileVerdict) -> None:
    """The file holds fewer records than checkpoint `cp` covers: say how they were lost."""
    name, signed = path.name, f"the checkpoint signed at {cp.ts}"
    if not walk.readable:
        verdict.problems.append(
            f"{name}: records after record {walk.last_seq} cannot be read (above), so they "
            f"could not be checked against {signed}, which covers {cp.records}"
        )
    elif walk.files == 0:
        verdict.problems.append(
            f"{name}: missing file: the file is gone, but {signed} covers {cp.records} records"
        )
    elif walk.records == 0:
        verdict.problems.append(
            f"{name}: emptied: the file holds no records, but {signed} covers {cp.records}"
        )
    else:
        verdict.problems.append(
            f"{name}: missing tail: the file holds {walk.last_seq} records, but {signed} covers "
            f"{cp.records}: {_span(walk.last_seq + 1, cp.records)} cut off"
        )


def _span(first: int, last: int) -> str:
    """'record 5 was' or 'records 5-7 were'."""
    return f"record {first} was" if first == last else f"records {first}-{last} were"


def _records(first: int, last: int) -> str:
    """'record 5' or 'records 5-7'."""
    return f"record {first}" if first == last else f"records {first}-{last}"


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) else default


def _verify_keys(base: Path, rec: Mapping[str, Any], where: str) -> list[str]:
    if "keys_file" in rec:
        try:
            blob = named_keys(base, rec)
        except OSError:
            return [f"{where}: keys file {rec['keys_file']} is missing"]
        except ValueError:  # keys_offset or keys_count not a number
            return [f"{where}: the range of its keys in {rec['keys_file']} is not readable"]
    else:
        try:
            blob = b"".join(bytes.fromhex(k) for k in rec.get("keys", []))
        except (TypeError, ValueError):
            return [f"{where}: the consulted keys are not hexadecimal (edited)"]
    if "keys_blake3" in rec:
        matches = keys_digest(blob) == rec["keys_blake3"]
    else:  # records written before BLAKE3
        matches = hashlib.sha256(blob).hexdigest() == rec.get("keys_sha256")
    if not matches:
        return [f"{where}: the consulted keys do not match their digest"]
    return []


def verify(path: Path, keys: AuditKeys | None, checkpoint_dir: Path | None = None) -> list[str]:
    """The problems of one audit file (empty: intact); see `verify_file`."""
    return verify_file(path, keys, checkpoint_dir).problems
