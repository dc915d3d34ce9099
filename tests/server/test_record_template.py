"""A templated record line is byte for byte the record encoder's line of the whole record, and an
audit log that writes through templates writes the file it writes without them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.audit import AuditLog, KeyBatch, canonical_json
from server.audit_keys import AuditKeys
from server.audit_verify import verify
from server.record_template import RecordTemplate, encode_text

KEYS = AuditKeys.from_secret(bytes(range(32)))
TEXT = st.text(max_size=12)  # any code point: quotes, backslashes, controls, non-ASCII
FIELD_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@given(
    shared=st.dictionaries(
        FIELD_NAMES, st.one_of(TEXT, st.integers(), st.lists(TEXT, max_size=3)), max_size=8
    ),
    varying=st.dictionaries(FIELD_NAMES, st.one_of(TEXT, st.integers()), min_size=1, max_size=5),
)
def test_a_templated_line_is_the_encoding_of_the_whole_record(
    shared: dict[str, Any], varying: dict[str, Any]
) -> None:
    shared = {k: v for k, v in shared.items() if k not in varying}
    template = RecordTemplate(shared, tuple(varying), canonical_json)
    encoded = {k: encode_text(v) if isinstance(v, str) else str(v) for k, v in varying.items()}
    assert template.line(encoded) == canonical_json(shared | varying)


def test_a_field_both_shared_and_varying_is_refused() -> None:
    with pytest.raises(ValueError, match="both shared and varying"):
        RecordTemplate({"ts": "x"}, ("ts",), canonical_json)


RECORDS = st.lists(
    st.fixed_dictionaries(
        {
            "rpc": st.sampled_from(["Check", "Recheck", "CheckStream"]),
            "identity": st.sampled_from(["dev", "cam-1", 'Liège "ville"']),
            "organisation": st.sampled_from(["Antwerpen", "Ville de Liège", "a\\b"]),
            "roles": st.lists(st.sampled_from(["enforcement", "desk", "public"]), max_size=3),
            "zone": st.sampled_from(["Antwerpen", "Gent", "Zone \u00e9\u00e8"]),
            "ruleset_revision": st.sampled_from(["r1", "r2"]),
            "snapshot_id": st.sampled_from(["s1", "s2"]),
            "pairs": st.integers(0, 3),
            "outcomes": st.dictionaries(
                st.sampled_from(["ALLOWED", "NOT_ALLOWED", "UNKNOWN"]), st.integers(0, 3)
            ),
            "keys": st.integers(0, 2),  # inline (a key log's name differs from log to log)
            "status": st.sampled_from(["OK", "PERMISSION_DENIED"]),
            "purpose": st.sampled_from(["", "enforcement", "communication"]),
            "request_id": st.sampled_from(["", "0123456789abcdef0123", "req.id:with-marks_0123"]),
            "micros": st.integers(0, 10**6),
        }
    ),
    min_size=1,
    max_size=12,
)


def _append_all(log: AuditLog, records: list[dict[str, Any]]) -> None:
    for i, rec in enumerate(records):
        keys = KeyBatch()
        keys.add(bytes([(171 + 37 * i) % 256]) * 16 * rec["keys"])  # hex with letters
        log.append(
            rpc=rec["rpc"], identity=rec["identity"], organisation=rec["organisation"],
            roles=rec["roles"], zone=rec["zone"], ruleset_revision=rec["ruleset_revision"],
            snapshot_id=rec["snapshot_id"], pairs=rec["pairs"], outcomes=rec["outcomes"],
            keys=keys, status=rec["status"], purpose=rec["purpose"],
            request_id=rec["request_id"],
            now=dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
            + dt.timedelta(microseconds=rec["micros"]),
        )  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(records=RECORDS)
def test_a_log_written_through_templates_is_the_log_written_without(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]
) -> None:
    """The same records, keys and times, appended once through the templates and once with every
    record encoded whole: the two files are the same bytes, and verify."""
    files = []
    declined: list[object] = []
    for templated in (True, False):
        directory = tmp_path_factory.mktemp("templated" if templated else "whole")
        log = AuditLog(directory, keys=KEYS, inline_keys=2, preallocate_bytes=1 << 16)
        if not templated:
            # a template refused: `append` encodes the record whole, as it does a stream chunk
            log._template = lambda *shape: declined.append(shape)  # type: ignore[method-assign,func-returns-value,return-value]
        try:
            _append_all(log, records)
            log.sync_through(len(records))
            if templated:
                assert log._templates  # the templates were used
        finally:
            log.close()
        files.append(directory / "audit-w0.jsonl")
    assert declined  # and in the other run, declined
    assert _records(files[0]) == _records(files[1])
    assert verify(files[0], KEYS) == []


def _records(path: Path) -> list[bytes]:
    """The record lines of an audit file, up to the zero padding."""
    return path.read_bytes().split(b"\0", 1)[0].splitlines()


def test_templated_and_whole_records_chain_into_one_file_that_verifies(tmp_path: Path) -> None:
    """Records with a key log, pair outcomes or extra fields are encoded whole, between records
    written through a template: one chain, which verifies."""
    log = AuditLog(tmp_path, keys=KEYS, inline_keys=2, preallocate_bytes=1 << 16)
    base = {
        "rpc": "Check", "identity": "dev", "organisation": "Ville de Liège", "roles": ["desk"],
        "zone": "Liège", "ruleset_revision": "r1", "snapshot_id": "s1", "pairs": 1,
        "outcomes": {"ALLOWED": 1}, "keys": 1, "status": "OK", "purpose": "",
        "request_id": "0123456789abcdef0123", "micros": 5,
    }  # fmt: skip
    try:
        _append_all(log, [base, base | {"keys": 3}, base])
        stream = KeyBatch()
        stream.add(bytes(16) * 2)
        log.append(
            rpc="CheckStream", identity="dev", organisation="o", roles=["enforcement"], zone="z",
            ruleset_revision="r1", snapshot_id="s1", pairs=2, outcomes={"ALLOWED": 2},
            keys=stream, pair_outcomes=bytes([1, 1]), extra={"stream": "s", "part": "chunk"},
        )  # fmt: skip
        _append_all(log, [base])
        log.sync_through(5)
        assert len(log._templates) == 1
    finally:
        log.close()
    assert len(_records(tmp_path / "audit-w0.jsonl")) == 5
    assert verify(tmp_path / "audit-w0.jsonl", KEYS) == []
