"""A client's malformed request is INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the
field, never INTERNAL or UNKNOWN, and its values come back cut short and never when they could
be a plate. One test per kind of malformation through a real in-process server, then a fuzz of
random bytes and mutated valid messages across every method (10,000 requests, about 20 s).
"""

from __future__ import annotations

import logging
import random
from collections import Counter

import grpc
import numpy as np
import pytest
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lez.api.v1 import access_pb2 as pb
from lez.errors import InvalidRequest, echo
from lez.keys import PlateKeyer
from tests.server.conftest import DAY, VEHICLES, ServerThread
from tests.server.helpers import chunk, error_reason, violations

SERVICE = "/lez.api.v1.AccessService/"
UNARY = ("Check", "Recheck", "FleetStats", "ServerInfo")
ALLOWED = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}
PRECONDITIONS = {"KEY_MISMATCH", "UNKNOWN_RULESET"}
"""FAILED_PRECONDITION reasons a well-formed request may meet (keys made with another key id,
a pinned rule revision that is not loaded): documented answers, not malformed requests."""
CALL_TIMEOUT_S = 10.0
"""Deadline of every call: a hang fails the test as DEADLINE_EXCEEDED."""
PLATE = VEHICLES[0].plate


def _outcome(err: grpc.RpcError) -> str:
    """A failed call as "CODE" or, for FAILED_PRECONDITION, "CODE/REASON"."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return f"{code.name}/{error_reason(err)[1]}"
    return code.name


def unary_raw(channel: grpc.Channel, method: str, raw: bytes) -> str:
    """Send raw request bytes to a unary method; how it ended (`_outcome`)."""
    call = channel.unary_unary(SERVICE + method)
    try:
        call(raw, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as err:
        return _outcome(err)
    return "OK"


def stream_raw(channel: grpc.Channel, raws: list[bytes]) -> str:
    """Send raw chunk bytes on CheckStream; how it ended (`_outcome`)."""
    call = channel.stream_stream(SERVICE + "CheckStream")
    try:
        for _ in call(iter(raws), timeout=CALL_TIMEOUT_S):
            pass
    except grpc.RpcError as err:
        return _outcome(err)
    return "OK"


def invalid_argument(call: object, request: object, *, stream: bool = False) -> grpc.RpcError:
    """Make a call expected to fail with INVALID_ARGUMENT; the error."""
    with pytest.raises(grpc.RpcError) as caught:
        if stream:
            list(call(iter([request]), timeout=CALL_TIMEOUT_S))  # type: ignore[operator]
        else:
            call(request, timeout=CALL_TIMEOUT_S)  # type: ignore[operator]
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()  # type: ignore[attr-defined]
    return err


# ---- undecodable bytes and invalid UTF-8 ------------------------------------------------------


@pytest.mark.parametrize("method", UNARY)
def test_undecodable_bytes_are_invalid_argument(channel: grpc.Channel, method: str) -> None:
    call = channel.unary_unary(SERVICE + method)
    err = invalid_argument(call, b"\xff\xff\xff\xff")
    name = f"{method}Request" if method != "Check" else "CheckRequest"
    assert name in violations(err)


def test_undecodable_chunk_is_invalid_argument(channel: grpc.Channel) -> None:
    call = channel.stream_stream(SERVICE + "CheckStream")
    err = invalid_argument(call, b"\x0a\x05ab", stream=True)  # a string cut short
    assert "CheckChunk" in violations(err)


def test_invalid_utf8_in_a_string_field_is_invalid_argument(channel: grpc.Channel) -> None:
    zone_field = b"\x22\x02\xff\xfe"  # CheckRequest.zone (field 4) holding invalid UTF-8
    err = invalid_argument(channel.unary_unary(SERVICE + "Check"), zone_field)
    assert "CheckRequest" in violations(err)
    plate_field = b"\x0a\x07\xff" + PLATE[1:].encode()  # a plate with a bad first byte
    err = invalid_argument(channel.unary_unary(SERVICE + "Check"), plate_field)
    assert PLATE[1:] not in err.details()  # type: ignore[attr-defined]


# ---- enums, dimensions, strings ---------------------------------------------------------------


def _earlier(**fields: object) -> pb.EarlierDecision:
    base: dict[str, object] = {"plate": PLATE, "zone": "Gent", "date": "2025-06-02"}
    base.update(fields)
    return pb.EarlierDecision(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["outcome", "reason"])
def test_out_of_range_enum_is_invalid_argument(channel: grpc.Channel, field: str) -> None:
    raw = pb.RecheckRequest(decisions=[_earlier(**{field: 250})]).SerializeToString()
    err = invalid_argument(channel.unary_unary(SERVICE + "Recheck"), raw)
    assert f"decisions[0].{field}" in violations(err)


def test_unknown_fleet_dimension_is_invalid_argument(channel: grpc.Channel) -> None:
    raw = pb.FleetStatsRequest(group_by=[1, 99]).SerializeToString()  # type: ignore[list-item]
    err = invalid_argument(channel.unary_unary(SERVICE + "FleetStats"), raw)
    assert "group_by" in violations(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("zone", "G" * 100_000),
        ("date", "2" * 5000),
        ("first_registration", "x" * 65),
        ("ruleset_revision", "r" * 1000),
        ("key_id", "k" * 1000),
        ("country", "B" * 1000),
        ("plate", PLATE * 1000),
    ],
    ids=lambda v: v if len(v) < 30 else f"{len(v)}chars",
)
def test_oversized_strings_are_invalid_argument_and_not_echoed(
    channel: grpc.Channel, field: str, value: str
) -> None:
    raw = pb.CheckRequest(**{"zone": "Gent", field: value}).SerializeToString()  # type: ignore[arg-type]
    err = invalid_argument(channel.unary_unary(SERVICE + "Check"), raw)
    assert field in violations(err)
    details = err.details()  # type: ignore[attr-defined]
    assert len(details) < 200 and value[:20] not in details


def test_a_plate_given_as_zone_is_never_echoed(channel: grpc.Channel) -> None:
    raw = pb.CheckRequest(plate=PLATE, zone=PLATE, date="2025-06-02").SerializeToString()
    err = invalid_argument(channel.unary_unary(SERVICE + "Check"), raw)
    assert error_reason(err)[1] == "UNKNOWN_ZONE"
    assert PLATE not in err.details() and "zone" in violations(err)  # type: ignore[attr-defined]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None and PLATE.encode() not in status.SerializeToString()


def test_malformed_requests_leave_no_plate_in_logs_audit_or_errors(
    channel: grpc.Channel, server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    requests = [
        ("Check", pb.CheckRequest(plate=PLATE, zone=PLATE).SerializeToString()),
        ("Check", pb.CheckRequest(plate=PLATE * 100, zone="Gent").SerializeToString()),
        ("Check", pb.CheckRequest(key=b"k" * 16, zone="Gent", key_id=PLATE).SerializeToString()),
        ("Check", b"\x0a\x07" + PLATE.encode() + b"\x22\x02\xff\xfe"),
        ("Recheck", pb.RecheckRequest(decisions=[_earlier(outcome=99)]).SerializeToString()),
        ("Recheck", pb.RecheckRequest(decisions=[_earlier(zone=PLATE)]).SerializeToString()),
    ]
    texts = []
    for method, raw in requests:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(SERVICE + method)(raw, timeout=CALL_TIMEOUT_S)
        err = caught.value
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None
        texts.append(err.details() + repr(status.SerializeToString()))  # type: ignore[attr-defined]
    server.settle()  # the last call's log line follows its answer
    audit_files = sorted(server.app.config.audit_dir.glob("*.jsonl"))
    everything = "".join(texts) + caplog.text + "".join(p.read_text() for p in audit_files)
    assert PLATE not in everything


def test_undecodable_chunk_after_answers_ends_the_stream_invalid_argument(
    channel: grpc.Channel,
) -> None:
    good = chunk([PLATE], [DAY], zone="Gent").SerializeToString()
    call = channel.stream_stream(SERVICE + "CheckStream")
    answers = call(iter([good, b"\xff\xff"]), timeout=CALL_TIMEOUT_S)
    with pytest.raises(grpc.RpcError) as caught:
        for _ in answers:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "CheckChunk" in violations(caught.value)


def test_echo_cuts_and_hides_plate_like_values() -> None:
    assert echo("Gent") == "'Gent'"
    assert "1ABC234" not in echo("1ABC234") and "1-ABC-234" not in echo("zone 1-ABC-234")
    assert len(echo("z" * 10_000)) < 80


# ---- packed columns -----------------------------------------------------------------------


def _stream_field_error(channel: grpc.Channel, msg: pb.CheckChunk) -> dict[str, str]:
    call = channel.stream_stream(SERVICE + "CheckStream")
    return violations(invalid_argument(call, msg.SerializeToString(), stream=True))


def test_wrong_packed_column_lengths_are_invalid_argument(
    channel: grpc.Channel, keyer: PlateKeyer
) -> None:
    good = chunk([PLATE, "1XYZ987"], [DAY, DAY], zone="Gent")
    short_offsets = pb.CheckChunk()
    short_offsets.CopyFrom(good)
    short_offsets.plates.offsets = short_offsets.plates.offsets[:-4]
    assert "plates.offsets" in _stream_field_error(channel, short_offsets)
    odd_days = pb.CheckChunk()
    odd_days.CopyFrom(good)
    odd_days.days = good.days + b"\x01"
    assert "days" in _stream_field_error(channel, odd_days)
    countries = pb.CheckChunk()
    countries.CopyFrom(good)
    countries.countries = b"BEB"
    assert "countries" in _stream_field_error(channel, countries)
    beyond = pb.CheckChunk()
    beyond.CopyFrom(good)
    beyond.plates.offsets = np.asarray([0, 3, 999], dtype="<u4").tobytes()
    assert "plates.offsets" in _stream_field_error(channel, beyond)
    keys = pb.CheckChunk(zone="Gent", keys=b"\x00" * 17, days=good.days, key_id=keyer.key_id)
    assert "keys" in _stream_field_error(channel, keys)
    width = pb.CheckChunk()
    width.CopyFrom(good)
    width.plates.Clear()
    width.plates.width = 8
    width.plates.data = b"1ABC234\0" + b"1XYZ98"
    assert "plates.data" in _stream_field_error(channel, width)


# ---- dates and required fields ----------------------------------------------------------------


@pytest.mark.parametrize("date", ["-0001-01-01", "2025-13-01", "99999-01-01", "0000-00-00"])
def test_absurd_fleet_dates_are_invalid_argument(channel: grpc.Channel, date: str) -> None:
    raw = pb.FleetStatsRequest(group_by=[1], date=date).SerializeToString()  # type: ignore[list-item]
    err = invalid_argument(channel.unary_unary(SERVICE + "FleetStats"), raw)
    assert "date" in violations(err)


def test_absurd_check_date_is_an_invalid_decision_not_an_error(channel: grpc.Channel) -> None:
    from tests.server.helpers import stub

    answer = stub(channel).Check(
        pb.CheckRequest(plate=PLATE, zone="Gent", date="9999-12-31"), timeout=CALL_TIMEOUT_S
    )
    assert answer.decision.outcome == pb.OUTCOME_INVALID


@pytest.mark.parametrize(
    ("method", "request_message", "field"),
    [
        ("Check", pb.CheckRequest(plate=PLATE), "zone"),
        ("Check", pb.CheckRequest(zone="Gent"), "subject"),
        ("Recheck", pb.RecheckRequest(), "decisions"),
        ("FleetStats", pb.FleetStatsRequest(), "group_by"),
    ],
)
def test_empty_required_fields_are_invalid_argument(
    channel: grpc.Channel, method: str, request_message: object, field: str
) -> None:
    raw = request_message.SerializeToString()  # type: ignore[attr-defined]
    err = invalid_argument(channel.unary_unary(SERVICE + method), raw)
    assert field in violations(err)


def test_chunk_without_subject_is_invalid_argument(channel: grpc.Channel) -> None:
    msg = pb.CheckChunk(zone="Gent", days=np.asarray([DAY], dtype="<i4").tobytes())
    assert "subject" in _stream_field_error(channel, msg)


# ---- the fuzz ---------------------------------------------------------------------------------


def _valid_messages(key_id: str) -> list[tuple[str, bytes]]:
    """Valid requests of every method, the seeds the mutations start from."""
    return [
        ("Check", pb.CheckRequest(plate=PLATE, zone="Gent", date="2025-06-02").SerializeToString()),
        (
            "Check",
            pb.CheckRequest(
                key=b"k" * 16, key_id=key_id, zone="Gent", date="2025-06-02"
            ).SerializeToString(),
        ),
        ("CheckStream", chunk([PLATE, "1XYZ987"], [DAY, DAY], zone="Gent").SerializeToString()),
        (
            "CheckStream",
            chunk([PLATE, "1XYZ987"], [DAY, DAY], zone="Gent", fixed_width=8).SerializeToString(),
        ),
        (
            "Recheck",
            pb.RecheckRequest(decisions=[_earlier(outcome=1, reason=1)]).SerializeToString(),
        ),
        (
            "CheckStream",
            pb.CheckChunk(
                zone="Gent",
                keys=b"k" * 32,
                key_id=key_id,
                countries=b"BENL",
                days=np.asarray([DAY, DAY], dtype="<i4").tobytes(),
            ).SerializeToString(),
        ),
        ("FleetStats", pb.FleetStatsRequest(group_by=[1, 2]).SerializeToString()),  # type: ignore[list-item]
        ("ServerInfo", pb.ServerInfoRequest().SerializeToString()),
    ]


METHODS = ("Check", "CheckStream", "Recheck", "FleetStats", "ServerInfo")


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    """A valid message with a few bytes flipped, inserted, deleted or its tail cut."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 2 and data:
            del data[at : at + rng.randint(1, 4)]
        else:
            data = data[:at]
    return bytes(data)


def fuzz_requests(key_id: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """Random bytes to any method, and valid messages mutated (`_mutate`)."""
    return st.one_of(
        st.tuples(st.sampled_from(METHODS), st.binary(max_size=64)),
        st.builds(
            lambda seed, r: (seed[0], _mutate(seed[1], random.Random(r))),
            st.sampled_from(_valid_messages(key_id)),
            st.integers(0, 2**32),
        ),
    )


def _fuzz_one(channel: grpc.Channel, method: str, raw: bytes) -> str:
    if method == "CheckStream":
        code = stream_raw(channel, [raw])
    else:
        code = unary_raw(channel, method, raw)
    allowed = ALLOWED | {f"FAILED_PRECONDITION/{reason}" for reason in PRECONDITIONS}
    assert code in allowed, f"{method} answered {code} to {raw!r}"
    return code


def _fuzz(channel: grpc.Channel, key_id: str, examples: int) -> None:
    seen: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(fuzz_requests(key_id))
    def run(request: tuple[str, bytes]) -> None:
        seen[f"{request[0]} {_fuzz_one(channel, *request)}"] += 1

    run()
    # the fuzz reaches past decoding: every method answers some requests, and rejects some
    for method in METHODS:
        assert seen[f"{method} OK"] > 0, seen
        assert seen[f"{method} INVALID_ARGUMENT"] > 0, seen


def test_fuzz_10000_malformed_requests(channel: grpc.Channel, keyer: PlateKeyer) -> None:
    _fuzz(channel, keyer.key_id, 10_000)


def test_text_limits_reach_nested_and_repeated_strings_and_skip_byte_columns() -> None:
    """A string inside a repeated message is checked and named by its place; a stream chunk's
    byte columns, however long, are not strings and never count."""
    from server.service import check_text_lengths

    long_plate = pb.RecheckRequest(
        decisions=[pb.EarlierDecision(plate=PLATE), pb.EarlierDecision(plate="A" * 300)],
    )
    with pytest.raises(InvalidRequest) as raised:
        check_text_lengths(long_plate)
    assert raised.value.field == "decisions[1].plate"
    n = 100_000
    chunk = pb.CheckChunk(zone="Gent", keys=bytes(16 * n), days=bytes(4 * n), key_id="k")
    check_text_lengths(chunk)  # a megabyte of columns, short strings: nothing to refuse
    chunk.plates.data = b"A" * 100_000  # one plate column of bytes, not a string
    check_text_lengths(chunk)
    chunk.zone = "G" * 65
    with pytest.raises(InvalidRequest) as raised:
        check_text_lengths(chunk)
    assert raised.value.field == "zone"
    # no request holds repeated strings or maps yet: a message that does shows what happens
    with pytest.raises(InvalidRequest) as raised:
        check_text_lengths(pb.ClientInfo(zones=["Gent", "G" * 65]))
    assert raised.value.field == "zones[1]"
    with pytest.raises(TypeError, match="map fields"):
        check_text_lengths(pb.DataQuality())
