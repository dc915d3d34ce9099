"""Reads with a time through the server: instants on Check and CheckStream, the Brussels day
derived by the server (DST included), the hour against registrations valid until 06:00, grace
days, the automatic oldtimer exemption, warning-only windows, and a stream mixing rows with
and without instants (docs/rules.md#time-of-day)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from lez import codes
from lez.api.v1 import access_pb2 as pb
from lez.days import DAY_OPEN, DAY_UNKNOWN, NO_INSTANT, parse_instant, to_day
from lez.keys import PlateKeyer
from lez.plates import as_matrix, normalise_many
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.store import StoreBuilder, StoreMeta, group_by_key
from lez.vehicle import FORMAT_VERSION, Flag, empty
from server.config import ServerConfig
from tests.server.conftest import ServerThread, make_server, rule_texts
from tests.server.helpers import chunk, error_reason, outcomes, reasons, stub
from tests.server.test_malformed import violations

GENT, BRUSSELS = "Gent", "Brussels"
OLD_DIESEL = "1XYZ987"  # diesel Euro 3: refused in Gent and Brussels in 2026
DIESEL_5 = "1DSL555"  # diesel Euro 5: refused in Brussels by the 2025 step only
O_PLATE = "OABC123"  # O plate, first registered 1990, diesel Euro 0
YOUNG = "1YNG000"  # registered as oldtimer in Flanders, but first registered 2000
FOREIGN = "AB123CD"  # French, registered (Flanders) the day after it entered
PASS_DAY = dt.date(2026, 3, 1)  # the Ghent day pass of OLD_DIESEL


def _d(value: dt.date) -> int:
    return to_day(value)


def _store(root: Path, keyer: PlateKeyer) -> None:
    specs = [
        (OLD_DIESEL, "02", "3", dt.date(2003, 1, 1), 0),
        (DIESEL_5, "02", "5", dt.date(2011, 1, 1), 0),
        (O_PLATE, "02", "", dt.date(1990, 5, 1), int(Flag.OLDTIMER_PLATE)),
        (YOUNG, "02", "", dt.date(2000, 5, 1), 0),
    ]
    rec = empty(len(specs))
    for i, (_, fuel, euro, first, flags) in enumerate(specs):
        rec[i]["valid_from"], rec[i]["valid_to"] = _d(dt.date(2000, 1, 1)), DAY_OPEN
        rec[i]["first_registration"] = _d(first)
        rec[i]["category"] = codes.CATEGORY.id_of("M1")
        rec[i]["fuel"] = codes.FUEL.id_of(fuel)
        rec[i]["euro"] = codes.EURO.id_of(euro) if euro else 0
        rec[i]["max_mass"] = 1500
        rec[i]["status"] = codes.STATUS.id_of("A")
        rec[i]["flags"] = flags
    plates = [s[0] for s in specs]
    be = np.full((len(plates), 2), list(b"BE"), dtype=np.uint8)
    norm, _ = normalise_many(as_matrix(plates), be)
    keys = keyer.key_matrix(be, norm)
    fr = np.full((1, 2), list(b"FR"), dtype=np.uint8)
    fr_norm, _ = normalise_many(as_matrix([FOREIGN]), fr)
    foreign_key = keyer.key_matrix(fr, fr_norm)
    regs = np.zeros(3, dtype=REGISTRATION_DTYPE)
    gent = 2
    regs[0] = (_d(PASS_DAY), _d(PASS_DAY) + 1, gent, RegistrationKind.DAY_PASS, 0, 0, 0, 0)
    regs[1] = (_d(dt.date(2026, 3, 2)), DAY_OPEN, 0, RegistrationKind.FOREIGN_VEHICLE,
               Region.FLANDERS, 0, 0, 0)  # fmt: skip
    regs[2] = (_d(dt.date(2025, 1, 1)), DAY_OPEN, 0, RegistrationKind.OLDTIMER,
               Region.FLANDERS, 0, 0, 0)  # fmt: skip
    reg_keys = np.concatenate([keys[[0]], foreign_key, keys[[3]]])
    meta = StoreMeta(
        format_version=FORMAT_VERSION, key_id=keyer.key_id, snapshot_id="time-0001",
        snapshot_seq=1, source_date="2026-03-01", built_at="2026-03-01T00:00:00+00:00",
        plates=len(plates), versions=len(plates), registrations=len(regs),
        mutation_watermark="m1",
    )  # fmt: skip
    order = np.argsort([bytes(k) for k in reg_keys], kind="stable")
    StoreBuilder(root).build(
        meta=meta,
        vehicles=group_by_key(keys, rec),
        registrations=group_by_key(reg_keys[order], regs[order]),
        rulesets=rule_texts(),
    )


@pytest.fixture
def time_channel(
    tmp_path: Path, keyer: PlateKeyer, base_config: ServerConfig
) -> Iterator[grpc.Channel]:
    root = tmp_path / "time-store"
    _store(root, keyer)
    server: ServerThread = make_server(base_config, store_root=root)
    try:
        with grpc.insecure_channel(server.target) as ch:
            yield ch
    finally:
        server.stop()


def _check(channel: grpc.Channel, plate: str, zone: str, **fields: str) -> pb.CheckResponse:
    request = pb.CheckRequest(plate=plate, zone=zone)
    for name, value in fields.items():
        setattr(request, name, value)
    response: pb.CheckResponse = stub(channel).Check(request)
    return response


def _instants(values: list[str | None], unit: int = 1) -> bytes:
    raw = [NO_INSTANT if v is None else parse_instant(v) * unit for v in values]
    return np.asarray(raw, dtype="<i8").tobytes()


def test_a_day_pass_holds_until_six_the_next_morning(time_channel: grpc.Channel) -> None:
    early = _check(time_channel, OLD_DIESEL, GENT, instant="2026-03-02T05:59:59+01:00")
    assert early.decision.outcome == pb.OUTCOME_ALLOWED
    assert early.decision.reason == pb.REASON_DAY_PASS
    assert early.decision.notes == pb.NOTE_VALID_UNTIL_HOUR
    assert early.decision.allowed_until == "2026-03-02"
    assert (early.date, early.instant) == ("2026-03-02", "2026-03-02T04:59:59Z")
    six = _check(time_channel, OLD_DIESEL, GENT, instant="2026-03-02T06:00:00+01:00")
    assert six.decision.outcome == pb.OUTCOME_NOT_ALLOWED and six.decision.notes == 0
    by_day = _check(time_channel, OLD_DIESEL, GENT, date="2026-03-02")
    assert by_day.decision.outcome == pb.OUTCOME_NOT_ALLOWED  # decided on the day, as before
    assert by_day.decision.notes == pb.NOTE_HOUR_UNKNOWN
    assert by_day.instant == ""
    on_the_day = _check(time_channel, OLD_DIESEL, GENT, date="2026-03-01")
    assert on_the_day.decision.outcome == pb.OUTCOME_ALLOWED and on_the_day.decision.notes == 0


def test_the_server_derives_the_brussels_day_across_midnight_and_dst(
    time_channel: grpc.Channel,
) -> None:
    # 23:30 UTC on 1 March is 00:30 on 2 March in Brussels (winter time, UTC+1)
    late = _check(time_channel, OLD_DIESEL, GENT, instant="2026-03-01T23:30:00Z")
    assert late.date == "2026-03-02" and late.decision.notes == pb.NOTE_VALID_UNTIL_HOUR
    # summer time ends 25 Oct 2026 at 01:00 UTC: 22:30 UTC is 23:30 (UTC+1) the same day
    autumn = _check(time_channel, OLD_DIESEL, GENT, instant="2026-10-25T22:30:00Z")
    assert autumn.date == "2026-10-25"
    # summer time starts 29 Mar 2026 at 01:00 UTC: 22:30 UTC on the 28th is 23:30 (UTC+1),
    # 22:30 UTC on the 29th is 00:30 on the 30th (UTC+2)
    assert _check(time_channel, OLD_DIESEL, GENT, instant="2026-03-28T22:30:00Z").date == (
        "2026-03-28"
    )
    assert _check(time_channel, OLD_DIESEL, GENT, instant="2026-03-29T22:30:00Z").date == (
        "2026-03-30"
    )
    same = _check(time_channel, OLD_DIESEL, GENT, instant="2026-03-02T00:30:00+01:00",
                  date="2026-03-02")  # fmt: skip
    assert same.date == "2026-03-02"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"instant": "2026-03-02 05:30"}, "instant"),  # no offset: ambiguous
        ({"instant": "yesterday"}, "instant"),
        ({"instant": "2026-03-02T05:30:00+01:00", "date": "2026-03-01"}, "date"),
    ],
)
def test_a_bad_instant_is_invalid_argument(
    time_channel: grpc.Channel, fields: dict[str, str], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _check(time_channel, OLD_DIESEL, GENT, **fields)
    assert error_reason(err.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err.value)


def test_oldtimers_the_plate_exemption_and_the_age_condition(time_channel: grpc.Channel) -> None:
    o_plate = _check(time_channel, O_PLATE, BRUSSELS, date="2026-06-01").decision
    assert o_plate.outcome == pb.OUTCOME_ALLOWED
    assert o_plate.reason == pb.REASON_OLDTIMER_PLATE_EXEMPT
    young = _check(time_channel, YOUNG, GENT, date="2026-06-01").decision
    assert young.outcome == pb.OUTCOME_NOT_ALLOWED
    assert young.reason == pb.REASON_OLDTIMER_TOO_YOUNG
    thirty = _check(time_channel, YOUNG, GENT, date="2030-05-01").decision
    assert thirty.outcome == pb.OUTCOME_ALLOWED
    assert thirty.reason == pb.REASON_REGISTERED_OLDTIMER


def test_refusals_of_a_new_step_in_its_warning_window_are_warnings(
    time_channel: grpc.Channel,
) -> None:
    step = _check(time_channel, DIESEL_5, BRUSSELS, date="2026-02-10").decision
    assert step.outcome == pb.OUTCOME_NOT_ALLOWED and step.notes == pb.NOTE_WARNING_ONLY
    older = _check(time_channel, OLD_DIESEL, BRUSSELS, date="2026-02-10").decision
    assert older.outcome == pb.OUTCOME_NOT_ALLOWED and older.notes == 0  # refused before 2025
    fined = _check(time_channel, DIESEL_5, BRUSSELS, date="2026-04-01").decision
    assert fined.outcome == pb.OUTCOME_NOT_ALLOWED and fined.notes == 0


def test_a_stream_mixing_instants_and_days_decides_each_row_as_its_own(
    time_channel: grpc.Channel,
) -> None:
    plates = [OLD_DIESEL, OLD_DIESEL, OLD_DIESEL, OLD_DIESEL, FOREIGN, FOREIGN, OLD_DIESEL]
    countries = ["BE", "BE", "BE", "BE", "FR", "FR", "BE"]
    instants = [
        "2026-03-02T05:30:00+01:00",  # before 06:00 the morning after the pass
        None,  # the same day given as a day: hour unknown
        "2026-03-02T06:00:00+01:00",  # from 06:00: refused
        "2026-03-01T23:30:00Z",  # 00:30 in Brussels on 2 March
        "2026-03-01T12:00:00+01:00",  # entered the day before registering: grace day
        "2026-02-28T12:00:00+01:00",  # two days before: not covered
        None,
    ]
    days = [0, _d(dt.date(2026, 3, 2)), 0, 0, 0, 0, _d(PASS_DAY)]
    for unit, multiplier in ((pb.INSTANT_UNIT_SECONDS, 1), (pb.INSTANT_UNIT_MILLISECONDS, 1000)):
        request = chunk(plates, days, zone=GENT, countries=countries)
        request.instants = _instants(instants, multiplier)
        request.instant_unit = unit
        answer = next(iter(stub(time_channel).CheckStream(iter([request]))))
        notes = list(np.frombuffer(answer.notes, dtype=np.uint8))
        decided_on = np.frombuffer(answer.days, dtype="<i4").tolist()
        allowed, refused = pb.OUTCOME_ALLOWED, pb.OUTCOME_NOT_ALLOWED
        assert outcomes(answer) == [allowed, refused, refused, allowed, allowed, refused, allowed]
        assert reasons(answer)[4] == pb.REASON_FOREIGN_REGISTERED
        assert reasons(answer)[5] == pb.REASON_FOREIGN_NOT_REGISTERED
        assert notes == [
            pb.NOTE_VALID_UNTIL_HOUR, pb.NOTE_HOUR_UNKNOWN, 0, pb.NOTE_VALID_UNTIL_HOUR,
            pb.NOTE_REGISTERED_AFTER_ENTRY, 0, 0,
        ]  # fmt: skip
        march = _d(dt.date(2026, 3, 1))
        assert decided_on == [march + 1, march + 1, march + 1, march + 1, march, march - 1, march]


def test_instants_without_days_and_malformed_instant_columns(time_channel: grpc.Channel) -> None:
    request = chunk([OLD_DIESEL, OLD_DIESEL, OLD_DIESEL], [], zone=GENT)
    request.days = b""
    request.instants = _instants(["2026-03-02T05:30:00+01:00", None, "1500-01-01T00:00:00Z"])
    answer = next(iter(stub(time_channel).CheckStream(iter([request]))))
    assert outcomes(answer) == [pb.OUTCOME_ALLOWED, pb.OUTCOME_INVALID, pb.OUTCOME_INVALID]
    assert reasons(answer)[1:] == [pb.REASON_INVALID_DAY, pb.REASON_INVALID_DAY]
    assert np.frombuffer(answer.days, dtype="<i4").tolist()[1:] == [DAY_UNKNOWN, DAY_UNKNOWN]
    with_days = chunk([OLD_DIESEL, OLD_DIESEL], [_d(PASS_DAY), _d(PASS_DAY)], zone=GENT)
    with_days.instants = _instants([None, "1500-01-01T00:00:00Z"])  # out of range: not its day
    answer = next(iter(stub(time_channel).CheckStream(iter([with_days]))))
    assert outcomes(answer) == [pb.OUTCOME_ALLOWED, pb.OUTCOME_INVALID]
    assert reasons(answer)[1] == pb.REASON_INVALID_DAY
    for broken in (
        {"instants": b"\0" * 7},  # not whole int64 values
        {"instants": b"\0" * 16},  # two instants for three days
        {"instants": b"\0" * 24, "instant_unit": 9},
    ):
        request = chunk([OLD_DIESEL] * 3, [_d(PASS_DAY)] * 3, zone=GENT)
        for name, value in broken.items():
            setattr(request, name, value)
        with pytest.raises(grpc.RpcError) as err:
            list(stub(time_channel).CheckStream(iter([request])))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
