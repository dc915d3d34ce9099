"""The wire contract mirrors the domain, and the one error table is total."""

from __future__ import annotations

import inspect

import grpc
import pytest

from lez import decision, errors, fleet, recheck
from lez.api.v1 import access_pb2 as pb
from server import status
from server.auth import Role
from server.config import ServerConfig, parse_serve_args


@pytest.mark.parametrize(
    ("domain", "proto", "prefix"),
    [
        (decision.Outcome, pb.Outcome, "OUTCOME_"),
        (decision.Reason, pb.Reason, "REASON_"),
        (Role, pb.Role, "ROLE_"),
        (recheck.Change, pb.Change, "CHANGE_"),
        (fleet.Dimension, pb.Dimension, "DIMENSION_"),
    ],
)
def test_proto_enums_mirror_the_domain(domain: type, proto: object, prefix: str) -> None:
    proto_values = {
        name.removeprefix(prefix): number
        for name, number in proto.items()  # type: ignore[attr-defined]
        if not name.endswith("_UNSPECIFIED")
    }
    domain_values = {m.name: m.value for m in domain if m.name != "UNSPECIFIED"}  # type: ignore[attr-defined]
    assert proto_values == domain_values


def test_derived_bits_mirror_the_domain() -> None:
    proto_values = {n.removeprefix("DERIVED_"): v for n, v in pb.Derived.items() if v}
    assert proto_values == {m.name: m.value for m in decision.Derived if m.value}


def test_note_bits_mirror_the_domain() -> None:
    proto_values = {n.removeprefix("NOTE_"): v for n, v in pb.Note.items() if v}
    assert proto_values == {m.name: m.value for m in decision.Note if m.value}


def _error_classes() -> list[type[errors.LezError]]:
    return [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.LezError)
    ]


LOADER_ONLY: set[type[errors.LezError]] = {
    errors.ExtractError,
    errors.BuildFailed,
    errors.RuleTableError,
    errors.RegistrationFileError,
    errors.StoreChangeError,
    errors.StandinError,  # the development DIV stand-in's (lez-div), never the server's
    errors.FeedError,  # the daily sync's (lez-loader sync)
    errors.CheckpointError,
    errors.TransactionRefused,
    errors.SyncBusy,
}
"""Errors of the loader's own files: no call can raise them, so the INTERNAL fallback is right."""


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_domain_error_has_a_status(cls: type[errors.LezError]) -> None:
    # listed in the table itself: the LezError -> INTERNAL fallback would hide a missing row
    assert cls in status.ERROR_TABLE or cls in LOADER_ONLY
    mapping = status.mapping_of(cls.__new__(cls))
    assert pb.ErrorReason.Name(mapping.reason).startswith("ERROR_REASON_")  # type: ignore[arg-type]
    if cls in LOADER_ONLY:
        assert mapping.reason == pb.ERROR_REASON_INTERNAL


def test_error_table_codes() -> None:
    code, message, st = status.to_status(errors.BatchTooLarge(5, 3))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit of 3" in message
    assert st.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.mapping_of(errors.StoreNotReady("x")).code == grpc.StatusCode.UNAVAILABLE
    assert status.mapping_of(errors.UnknownRuleset("x")).code == grpc.StatusCode.FAILED_PRECONDITION
    assert status.mapping_of(errors.RateLimited("x")).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status.mapping_of(RuntimeError("boom")).code == grpc.StatusCode.INTERNAL
    _, msg, _ = status.to_status(RuntimeError("secret 1ABC234"))
    assert "1ABC234" not in msg


def test_config_from_argv_and_env() -> None:
    cfg = parse_serve_args(
        ["--workers", "2", "--max-chunk-pairs", "500"],
        {"LEZ_WORKERS": "3", "LEZ_STORE_ROOT": "/x", "LEZ_WARM_STORE": "0"},
    )
    assert cfg.workers == 2  # argv wins over the environment
    assert cfg.max_chunk_pairs == 500
    assert str(cfg.store_root) == "/x"
    assert cfg.warm_store is False


def test_config_values_are_read_by_their_field_type() -> None:
    cfg = parse_serve_args(["--audit-sync-ms", "2.5", "--rules-dir", ""], {})
    assert cfg.audit_sync_ms == 2.5 and cfg.rules_dir is None  # an optional path may be empty
    with pytest.raises(ValueError, match=r"--store-root / LEZ_STORE_ROOT.*a path is required"):
        parse_serve_args([], {"LEZ_STORE_ROOT": ""})  # a required path may not
    with pytest.raises(ValueError, match=r"--workers / LEZ_WORKERS.*expected a whole number"):
        parse_serve_args(["--workers", "two"], {})


def test_plain_tcp_only_on_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ServerConfig(address="0.0.0.0:50051").validate()
    with pytest.raises(ValueError, match="tls"):
        ServerConfig(address="0.0.0.0:1", tls_cert=ServerConfig().key_file).validate()
    ServerConfig(address="[::1]:1").validate()
