"""The hot path: one question in, its answers out, with one entry per kind of question.

- `answer_chunk`: a `CheckChunk` of n packed (plate or key, country, day or instant) items in,
  the `DecisionChunk` columns out (`ChunkAnswers`). A row with an instant is decided on the
  Europe/Brussels day and hour of it (`lez.days.brussels_days_seconds`), a row without one on
  its day with the hour unknown. All vectorised: decode the packed columns
  (zero-copy `np.frombuffer` views), validate countries, plates and days (a bad item becomes
  OUTCOME_INVALID with its INVALID_* reason; the rest goes on), normalise and key in one native
  pass (`PlateKeyer.normalise_and_key`), one batch lookup of vehicle versions and
  registrations, `lez.rules.evaluate`, then the result columns as bytes. Rows stay aligned with
  the input: result row i answers input item i, duplicates and invalid items included.
- `answer_single`: one `SingleCheck` in, a `SingleAnswer` out: the same answer with plain values
  instead of arrays (`PlateKeyer.normalise_and_key_one`, `lez.rules.decide_one`).

What both need besides the question is an `AnswerContext` (rule revision, zone, keyer, limits).
Nothing here knows about gRPC beyond reading a chunk's fields; the servicer does the rest, and
calls only the entry points above (tests/test_layout.py checks it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

import lez.rules
from lez.api.v1 import access_pb2 as pb
from lez.days import (
    DAY_UNKNOWN,
    NO_INSTANT,
    SECOND_UNKNOWN,
    SECONDS_PER_DAY,
    brussels_days_seconds,
    to_day,
)
from lez.decision import BatchInput, DecisionColumns, ItemInput, Outcome, Reason
from lez.errors import BatchTooLarge, InvalidPlate, InvalidRequest, KeyMismatch, echo
from lez.keys import KEY_BYTES, PlateKeyer
from lez.plates import BELGIUM, PlateRule, normalise_country
from lez.rules import Revision, Verdict
from lez.store import KeyLookups, Snapshot, VehicleLookup
from lez.vehicle import empty

__all__ = [
    "EARLIEST_DAY",
    "EARLIEST_INSTANT",
    "LATEST_DAY",
    "LATEST_INSTANT",
    "OUTCOMES",
    "AnswerContext",
    "ChunkAnswers",
    "SingleAnswer",
    "SingleCheck",
    "admit_chunk",
    "answer_chunk",
    "answer_single",
]
"""The entry points: what the servicer may use."""

EARLIEST_DAY: Final = to_day(dt.date(1900, 1, 1))
"""Days before this are unreadable (INVALID_DAY): no LEZ question is that old."""
LATEST_DAY: Final = to_day(dt.date(2199, 12, 31))
"""Days after this are unreadable (INVALID_DAY)."""
OUTCOMES: Final = len(Outcome)
"""Length of an outcome-count array (indexed by `Outcome` value)."""
EARLIEST_INSTANT: Final = (EARLIEST_DAY - 1) * SECONDS_PER_DAY
"""Instants before this (seconds) cannot fall on a readable day (INVALID_DAY)."""
LATEST_INSTANT: Final = (LATEST_DAY + 2) * SECONDS_PER_DAY
"""Instants from this on (seconds) cannot fall on a readable day (INVALID_DAY)."""
INSTANT_DIVISORS: Final = {
    pb.INSTANT_UNIT_UNSPECIFIED: 1,
    pb.INSTANT_UNIT_SECONDS: 1,
    pb.INSTANT_UNIT_MILLISECONDS: 1000,
}
"""Units of an instants column, as the divisor that turns them into seconds."""
COUNTRY_BYTES: Final = 2
BE: Final = np.frombuffer(b"BE", dtype=np.uint8)
NL: Final = np.frombuffer(b"NL", dtype=np.uint8)


# ---- the questions and the answers ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerContext:
    """What answering needs besides the question: the rules, the zone, the keyer and limits."""

    revision: Revision
    zone_id: int
    keyer: PlateKeyer
    store_key_id: str  # keys sent by callers must have been made with this key
    max_plate_bytes: int
    max_chunk_pairs: int
    as_of: int | None = None  # evaluate on this day: the register of the read's day, the rules
    # and registrations of this one (warning campaigns); None: each item on its own day


@dataclass(frozen=True, slots=True)
class ChunkAnswers:
    """The answers to a chunk of n items, ready for a `DecisionChunk`."""

    count: int
    columns: dict[str, Any]  # DecisionChunk column fields (bytes), minimised unless technical
    technical: dict[str, bytes] | None  # TechnicalColumns fields, for callers that see them
    outcome_counts: npt.NDArray[np.int64]  # by Outcome value
    audit_keys: bytes  # the keys of the readable items, concatenated (for the audit log)
    audit_outcomes: bytes  # the outcome of each readable item, aligned with `audit_keys`


@dataclass(frozen=True, slots=True, kw_only=True)
class SingleCheck:
    """One item of a unary call: a plate or a pre-pseudonymised key (with its key id)."""

    plate: str | None = None
    key: bytes | None = None
    key_id: str = ""  # the id of the key `key` was made with
    country: str = ""  # ISO alpha-2; "" means BE
    day: int  # DAY_UNKNOWN when the caller's date was unreadable (INVALID_DAY)
    claimed_first_registration: int | None = None  # public checker only
    second: int = SECOND_UNKNOWN  # second of the Brussels day when the read gave an instant


@dataclass(frozen=True, slots=True)
class SingleAnswer:
    """The answer for one item, with the vehicle version it was decided on (None if none)."""

    verdict: Verdict
    record: np.void | None
    audit_key: bytes  # the item's key, or nothing when it was unreadable (for the audit log)
    verdict_under_other_revision: Verdict | None = None  # see `answer_single`'s `also_under`


def admit_chunk(chunk: pb.CheckChunk, context: AnswerContext) -> int:
    """The number of items of a chunk, once its subject, key id and size are acceptable."""
    which = chunk.WhichOneof("subject")
    if which not in ("plates", "keys"):
        raise InvalidRequest("a chunk needs plates or keys", field="subject")
    if which == "keys":
        _check_key_id(chunk.key_id, context.store_key_id)
    n = _chunk_size(chunk)
    if n > context.max_chunk_pairs:
        raise BatchTooLarge(n, context.max_chunk_pairs)
    return n


def _chunk_size(chunk: pb.CheckChunk) -> int:
    """n, from the days column or, without one, the instants column (which must agree)."""
    if not chunk.instants:
        return len(chunk.days) // 4
    if len(chunk.instants) % 8:
        raise InvalidRequest(
            f"instants hold {len(chunk.instants)} bytes; expected little-endian int64 values",
            field="instants",
        )
    n = len(chunk.instants) // 8
    if chunk.days and len(chunk.days) != 4 * n:
        raise InvalidRequest(
            f"days hold {len(chunk.days)} bytes; expected {n} little-endian int32 like the "
            "instants, or none",
            field="days",
        )
    if chunk.instant_unit not in INSTANT_DIVISORS:
        raise InvalidRequest("unknown instant unit", field="instant_unit")
    return n


def answer_chunk(
    snap: Snapshot, context: AnswerContext, chunk: pb.CheckChunk, *, technical: bool
) -> ChunkAnswers:
    """The answers to an admitted chunk (`admit_chunk`), on one store snapshot."""
    n = _chunk_size(chunk)
    countries = _country_matrix(chunk.countries, n)
    if chunk.instants:
        days, seconds, unreadable = _instant_days(chunk, n)
    else:
        days, seconds, unreadable = _day_column(chunk.days, n), None, None
    if chunk.WhichOneof("subject") == "keys":
        items = _decode_keys(chunk.keys, countries, days, unreadable)
    else:
        plates = chunk.plates
        spans = _plate_spans(plates.data, plates.offsets, plates.width, n, context.max_plate_bytes)
        items = _decode_plates(context.keyer, spans, countries, days, unreadable)
    decided = _decide(
        snap, context.revision, context.zone_id, items, as_of=context.as_of, seconds=seconds
    )
    columns, technical_columns = _result_columns(decided, technical=technical)
    if seconds is not None:  # the day each row was decided on; unknown where unreadable
        unknown = _day_invalid(days, unreadable)
        columns["days"] = _b(np.where(unknown, DAY_UNKNOWN, days) if unknown.any() else days,
                             "<i4")  # fmt: skip
    return ChunkAnswers(
        count=n,
        columns=columns,
        technical=technical_columns,
        outcome_counts=decided.outcome_counts(),
        audit_keys=items.valid_keys_bytes(),
        audit_outcomes=items.valid_only(decided.decisions.outcome.astype(np.uint8)),
    )


def answer_single(
    snap: KeyLookups,
    context: AnswerContext,
    check: SingleCheck,
    *,
    also_under: Revision | None = None,
) -> SingleAnswer:
    """The answer for one item through the single-check path (`lez.rules.decide_one`: the
    compiled tables read with scalar arithmetic), which the engine's property tests hold equal
    to `lez.rules.evaluate`. No arrays are set up: the vehicle and its registrations come from
    the warm key columns with a few scalar reads. `also_under` decides the same item under
    another revision as well (a recheck's earlier rules)."""
    item = _decode_single(context, check)
    if item.invalid:
        verdict = Verdict(Outcome.INVALID, item.invalid, DAY_UNKNOWN, 0, 0, 0)
        other = verdict if also_under is not None else None
        return SingleAnswer(verdict, None, item.valid_key(), other)
    known, record = snap.vehicle_on(item.key, item.day)
    facts = ItemInput(
        record=record,
        known=known,
        day=item.day,
        belgian=item.country == b"BE",
        dutch=item.country == b"NL",
        registrations=snap.registrations_for(item.key),
        claimed_first_registration=check.claimed_first_registration,
        second=check.second,
    )
    verdict = lez.rules.decide_one(context.revision, context.zone_id, facts)
    other = None
    if also_under is not None:
        other = lez.rules.decide_one(also_under, context.zone_id, facts)
    return SingleAnswer(verdict, record, item.valid_key(), other)


# ---- decoding ------------------------------------------------------------------------------


def _viewed_bytes(array: npt.NDArray[np.uint8]) -> bytes | None:
    """The bytes object `array` views from its first byte to its last, else None."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, bytes) and len(base) == array.nbytes and array.flags.c_contiguous:
        return base
    return None


@dataclass(frozen=True, slots=True)
class KeyedItems:
    """n decoded items ready for lookup, aligned with the input."""

    keys: npt.NDArray[np.uint8]  # (n, 16); zero rows where invalid
    countries: npt.NDArray[np.uint8]  # (n, 2) upper case
    days: npt.NDArray[np.int32]  # (n,); 0 where invalid
    invalid: npt.NDArray[np.uint8]  # (n,) 0 or a Reason.INVALID_* value

    def valid_keys_bytes(self) -> bytes:
        """The keys of the readable items, concatenated (for the audit log): when every item
        is readable and the keys view a whole bytes object (the request's keys, the keying
        core's output), that object itself, not an 800 KB copy a chunk."""
        if not self.invalid.any():
            whole = _viewed_bytes(self.keys)
            return whole if whole is not None else bytes(self.keys.tobytes())
        return bytes(self.keys[self.invalid == 0].tobytes())

    def valid_only(self, column: npt.NDArray[np.uint8]) -> bytes:
        """A one-byte column of the n items, kept for the readable ones (aligned with
        `valid_keys_bytes`)."""
        if not self.invalid.any():
            return bytes(column.tobytes())
        return bytes(column[self.invalid == 0].tobytes())


@dataclass(frozen=True, slots=True)
class KeyedItem:
    """One decoded item of a single check: plain values, no arrays."""

    key: bytes  # 16 bytes; zeros where invalid
    country: bytes  # 2 upper-case bytes
    day: int  # 0 where invalid
    invalid: int  # 0 or a Reason.INVALID_* value

    def valid_key(self) -> bytes:
        """The key, or nothing when the item was unreadable (for the audit log)."""
        return b"" if self.invalid else self.key


@dataclass(frozen=True, slots=True)
class PlateSpans:
    """The wire's packed plate column as flat bytes with per-plate starts and lengths."""

    data: npt.NDArray[np.uint8]
    starts: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    too_long: npt.NDArray[np.bool_]


def _check_key_id(given: str, store_key_id: str) -> None:
    if given != store_key_id:
        raise KeyMismatch(
            f"the keys were made with key id {echo(given) if given else '(none given)'}, the "
            f"store uses "
            f"{store_key_id}; send plates, or keys made with the store's key"
        )


def _plate_spans(
    data: bytes, offsets: bytes, width: int, n: int, max_plate_bytes: int
) -> PlateSpans:
    """Decode a packed plate column (fixed width or uint32 offsets) without copying the bytes.

    Plates longer than `max_plate_bytes` are cut there and flagged `too_long` (INVALID_PLATE).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if not offsets:
        if width <= 0:
            raise InvalidRequest("plates need either offsets or a fixed width", field="plates")
        if width > max_plate_bytes:
            raise InvalidRequest(
                f"plate width {width} exceeds the limit of {max_plate_bytes}", field="plates.width"
            )
        if len(raw) != n * width:
            raise InvalidRequest(
                f"plates hold {len(raw)} bytes; expected {n} x {width}", field="plates.data"
            )
        starts = np.arange(n, dtype=np.int64) * width
        lengths = np.full(n, width, dtype=np.int64)  # NUL padding counts as a separator
        return PlateSpans(raw, starts, lengths, np.zeros(n, dtype=np.bool_))
    if len(offsets) != 4 * (n + 1):
        raise InvalidRequest(
            f"plate offsets must hold {n + 1} uint32 values", field="plates.offsets"
        )
    off = np.frombuffer(offsets, dtype="<u4").astype(np.int64)
    lengths = np.diff(off)
    if off[0] != 0 or off[-1] != len(raw) or (lengths < 0).any():
        raise InvalidRequest(
            "plate offsets must start at 0, rise, and end at the data length",
            field="plates.offsets",
        )
    too_long = lengths > max_plate_bytes
    return PlateSpans(raw, off[:-1], np.minimum(lengths, max_plate_bytes), too_long)


def _country_matrix(countries: bytes, n: int) -> npt.NDArray[np.uint8]:
    """(n, 2) upper-case country codes; empty means all BE."""
    if not countries:
        return np.broadcast_to(BE, (n, COUNTRY_BYTES))
    if len(countries) != COUNTRY_BYTES * n:
        raise InvalidRequest(
            f"countries hold {len(countries)} bytes; expected {n} x 2", field="countries"
        )
    mat = np.frombuffer(countries, dtype=np.uint8).reshape(n, COUNTRY_BYTES)
    lower = (mat >= ord("a")) & (mat <= ord("z"))
    if lower.any():
        mat = mat - (lower * 32).astype(np.uint8)
    return mat


def _instant_days(
    chunk: pb.CheckChunk, n: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Each row's day and second of the Brussels day from its instant, or its `days` value and
    SECOND_UNKNOWN for a row without one; and the rows whose instant is unreadable (out of
    range, or missing where no days were sent), which become INVALID_DAY."""
    raw = np.frombuffer(chunk.instants, dtype="<i8")
    divisor = INSTANT_DIVISORS[chunk.instant_unit]
    # NO_INSTANT (int64 minimum) lies below the earliest readable instant in any unit
    readable = (raw >= EARLIEST_INSTANT * divisor) & (raw < LATEST_INSTANT * divisor)
    instants = np.floor_divide(raw, divisor) if divisor != 1 else raw
    if readable.all():  # the usual chunk: every row has a readable instant
        days, seconds = brussels_days_seconds(instants)
        return days, seconds, np.zeros(n, dtype=np.bool_)
    if chunk.days:
        days = _day_column(chunk.days, n).copy()
        unreadable = (raw != NO_INSTANT) & ~readable
    else:
        days = np.zeros(n, dtype=np.int32)
        unreadable = ~readable
    seconds = np.full(n, SECOND_UNKNOWN, dtype=np.int32)
    if readable.any():
        rows = np.flatnonzero(readable)
        days[rows], seconds[rows] = brussels_days_seconds(instants[rows])
    return days, seconds, unreadable


def _day_column(days: bytes, n: int) -> npt.NDArray[np.int32]:
    if len(days) != 4 * n:
        raise InvalidRequest(
            f"days hold {len(days)} bytes; expected {n} little-endian int32", field="days"
        )
    return np.frombuffer(days, dtype="<i4").astype(np.int32, copy=False)


def _day_invalid(
    days: npt.NDArray[np.int32], unreadable: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.bool_]:
    out = (days < EARLIEST_DAY) | (days > LATEST_DAY)
    return out if unreadable is None else out | unreadable


def _decode_plates(
    keyer: PlateKeyer,
    plates: PlateSpans,
    countries: npt.NDArray[np.uint8],
    days: npt.NDArray[np.int32],
    unreadable: npt.NDArray[np.bool_] | None = None,
) -> KeyedItems:
    """Validate, normalise and key n plates in one pass (`PlateKeyer.normalise_and_key`);
    `unreadable` rows (an instant out of range) are INVALID_DAY."""
    n = len(days)
    _, rule, keys = keyer.normalise_and_key(plates.data, plates.starts, plates.lengths, countries)
    invalid = np.zeros(n, dtype=np.uint8)
    invalid[_day_invalid(days, unreadable)] = Reason.INVALID_DAY
    invalid[(rule != PlateRule.OK) | plates.too_long] = Reason.INVALID_PLATE
    invalid[rule == PlateRule.BAD_COUNTRY] = Reason.INVALID_COUNTRY
    if invalid.any():
        keys = keys.copy()
        keys[invalid != 0] = 0
        days = np.where(invalid == 0, days, 0).astype(np.int32)
    return KeyedItems(keys=keys, countries=countries, days=days, invalid=invalid)


def _decode_keys(
    keys: bytes,
    countries: npt.NDArray[np.uint8],
    days: npt.NDArray[np.int32],
    unreadable: npt.NDArray[np.bool_] | None = None,
) -> KeyedItems:
    """Items from pre-pseudonymised keys: no normalisation, no keying."""
    n = len(days)
    if len(keys) != KEY_BYTES * n:
        raise InvalidRequest(
            f"keys hold {len(keys)} bytes; expected {n} x {KEY_BYTES}", field="keys"
        )
    mat = np.frombuffer(keys, dtype=np.uint8).reshape(n, KEY_BYTES)
    letters = (countries >= ord("A")) & (countries <= ord("Z"))
    invalid = np.zeros(n, dtype=np.uint8)
    invalid[_day_invalid(days, unreadable)] = Reason.INVALID_DAY
    invalid[~letters.all(axis=1)] = Reason.INVALID_COUNTRY
    if invalid.any():
        days = np.where(invalid == 0, days, 0).astype(np.int32)
    return KeyedItems(keys=mat, countries=countries, days=days, invalid=invalid)


def _decode_single(context: AnswerContext, check: SingleCheck) -> KeyedItem:
    """One item given as plate or key."""
    country = check.country or BELGIUM
    if check.key is not None:
        _check_key_id(check.key_id, context.store_key_id)
        if len(check.key) != KEY_BYTES:
            raise InvalidRequest(f"a key is {KEY_BYTES} bytes, not {len(check.key)}", field="key")
        return _decode_one_key(check.key, country, check.day)
    if check.plate is None:
        raise InvalidRequest("give a plate or a key", field="subject")
    return _decode_one_plate(
        context.keyer, check.plate, country, check.day, context.max_plate_bytes
    )


def _decode_one_plate(
    keyer: PlateKeyer, raw: str, country: str, day: int, max_plate_bytes: int
) -> KeyedItem:
    """One plate through `PlateKeyer.normalise_and_key_one` (the native core on a batch of one,
    or `lez.plates.try_normalise` and `PlateKeyer.key`): the same answer as `_decode_plates`
    (property-tested in lez) at a fraction of the per-call cost."""
    invalid = 0
    rule, key = keyer.normalise_and_key_one(raw, country)
    if day < EARLIEST_DAY or day > LATEST_DAY:
        invalid = Reason.INVALID_DAY
    if rule is not PlateRule.OK or len(raw.encode("utf-8", "replace")) > max_plate_bytes:
        invalid = Reason.INVALID_PLATE
    if rule is PlateRule.BAD_COUNTRY:
        invalid = Reason.INVALID_COUNTRY
    cty = country.upper() if rule is not PlateRule.BAD_COUNTRY else "??"
    return KeyedItem(
        key=bytes(KEY_BYTES) if invalid else key,
        country=cty.encode("ascii", "replace")[:COUNTRY_BYTES],
        day=0 if invalid else day,
        invalid=int(invalid),
    )


def _decode_one_key(key: bytes, country: str, day: int) -> KeyedItem:
    """One pre-pseudonymised key (its length checked by the caller): the same validation as
    `_decode_keys` and `_decode_one_plate` (country by `lez.plates.normalise_country`, day
    range), no keying."""
    invalid = 0
    if day < EARLIEST_DAY or day > LATEST_DAY:
        invalid = Reason.INVALID_DAY
    try:
        cty = normalise_country(country)
    except InvalidPlate:
        cty, invalid = "??", Reason.INVALID_COUNTRY
    return KeyedItem(
        key=bytes(KEY_BYTES) if invalid else key,
        country=cty.encode("ascii"),
        day=0 if invalid else day,
        invalid=int(invalid),
    )


# ---- deciding ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecidedChunk:
    """Decisions for n items plus the lookup that fed them."""

    decisions: DecisionColumns
    lookup: VehicleLookup

    def outcome_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.decisions.outcome, minlength=OUTCOMES)[:OUTCOMES]


def _decide(
    snap: Snapshot,
    revision: Revision,
    zone_id: int,
    items: KeyedItems,
    claimed_first_registration: npt.NDArray[np.int32] | None = None,
    *,
    as_of: int | None = None,
    seconds: npt.NDArray[np.int32] | None = None,
) -> DecidedChunk:
    """Look up and decide n items on one snapshot; INVALID rows are forced INVALID. With
    `as_of`, the vehicle version of each item's day is decided on `as_of` (its rules and
    registrations), without the reads' hours (an hour of another day says nothing about the
    evaluation date). `seconds`: each read's second of its Brussels day, where known."""
    lookup = snap.vehicles_on(items.keys, items.days)
    days = items.days
    if as_of is not None:
        days = np.where(items.invalid == 0, as_of, 0).astype(np.int32)
        seconds = None
    reg_query, reg_rows = snap.registrations_of(items.keys)
    countries = items.countries
    belgian = (countries[:, 0] == BE[0]) & (countries[:, 1] == BE[1])
    dutch = (countries[:, 0] == NL[0]) & (countries[:, 1] == NL[1])
    batch = BatchInput(
        records=lookup.records,
        found=lookup.found,
        known=lookup.known,
        days=days,
        belgian=belgian,
        dutch=dutch,
        invalid=items.invalid,
        reg_query=reg_query,
        reg_rows=reg_rows,
        claimed_first_registration=claimed_first_registration,
        seconds=seconds,
    )
    decisions = lez.rules.evaluate(revision, zone_id, batch)
    bad = items.invalid != 0
    if bad.any():
        decisions.outcome[bad] = Outcome.INVALID
        decisions.reason[bad] = items.invalid[bad]
        decisions.allowed_until[bad] = DAY_UNKNOWN
        decisions.notes[bad] = 0
    return DecidedChunk(decisions=decisions, lookup=lookup)


# ---- encoding ------------------------------------------------------------------------------


def _b(values: npt.NDArray[Any], dtype: str) -> bytes:
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def _result_columns(
    decided: DecidedChunk, *, technical: bool
) -> tuple[dict[str, Any], dict[str, bytes] | None]:
    """The DecisionChunk column fields (bytes) for n decisions, and the TechnicalColumns fields
    when `technical` (else the reasons and derived bits are zeros: minimised)."""
    decisions = decided.decisions
    n = len(decisions.outcome)
    cols: dict[str, Any] = {
        "count": n,
        "outcome": _b(decisions.outcome, "u1"),
        "allowed_until": _b(decisions.allowed_until, "<i4"),
        "euro": _b(
            np.where(decisions.outcome == Outcome.COMBINATION_MISMATCH, 0, decisions.euro), "u1"
        ),
    }
    if not technical:
        cols["reason"] = bytes(n)
        cols["derived"] = bytes(n)
        cols["notes"] = bytes(n)
        return cols, None
    rec = decided.lookup.records
    mismatch = decisions.outcome == Outcome.COMBINATION_MISMATCH
    if mismatch.any():  # no vehicle data where the combination does not match
        rec = rec.copy()
        rec[mismatch] = empty(int(mismatch.sum()))
    cols["reason"] = _b(decisions.reason, "u1")
    cols["derived"] = _b(decisions.derived, "u1")
    cols["notes"] = _b(decisions.notes, "u1")
    return cols, {
        "category": _b(decisions.category, "u1"),
        "fuel": _b(rec["fuel"], "u1"),
        "first_registration": _b(rec["first_registration"], "<i4"),
        "max_mass_kg": _b(rec["max_mass"], "<u4"),
        "co2_g_km": _b(rec["co2"], "<u2"),
        "power_kw": _b(rec["power_kw"], "<u2"),
    }
