"""The hot path: packed columns in, packed decision columns out, one chunk at a time.

Per chunk, all vectorised: decode the packed columns (zero-copy `np.frombuffer` views), validate
countries, plates and days (a bad item becomes OUTCOME_INVALID with its INVALID_* reason; the
rest goes on), `PlateKeyer.normalise_and_key` (normalisation and HMAC in one native pass), one
batch lookup of vehicle versions and registrations, `lez.rules.evaluate`, then the result
columns as bytes. Rows stay aligned with the input: result row i answers input pair i,
duplicates and invalid items included. Single checks take `decode_one_plate` and
`evaluate_single`: the same answers with plain values instead of arrays.

Nothing here knows about gRPC beyond reading a chunk's fields; the servicer does the rest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

import lez.rules
from lez.days import DAY_UNKNOWN, to_day
from lez.decision import BatchInput, DecisionColumns, Outcome, Reason
from lez.errors import BatchTooLarge, InvalidPlate, InvalidRequest
from lez.keys import KEY_BYTES, PlateKeyer
from lez.plates import PlateRule, normalise_country, try_normalise
from lez.store import Snapshot, VehicleLookup
from lez.vehicle import empty, version_on

EARLIEST_DAY: Final = to_day(dt.date(1900, 1, 1))
"""Days before this are unreadable (INVALID_DAY): no LEZ question is that old."""
LATEST_DAY: Final = to_day(dt.date(2199, 12, 31))
"""Days after this are unreadable (INVALID_DAY)."""
OUTCOMES: Final = len(Outcome)
COUNTRY_BYTES: Final = 2
BE: Final = np.frombuffer(b"BE", dtype=np.uint8)
NL: Final = np.frombuffer(b"NL", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Pairs:
    """n decoded pairs ready for lookup, aligned with the input."""

    keys: npt.NDArray[np.uint8]  # (n, 16); zero rows where invalid
    countries: npt.NDArray[np.uint8]  # (n, 2) upper case
    days: npt.NDArray[np.int32]  # (n,); 0 where invalid
    invalid: npt.NDArray[np.uint8]  # (n,) 0 or a Reason.INVALID_* value

    def valid_keys_bytes(self) -> bytes:
        """The keys of the readable pairs, concatenated (for the audit log)."""
        if not self.invalid.any():
            return bytes(self.keys.tobytes())
        return bytes(self.keys[self.invalid == 0].tobytes())


@dataclass(frozen=True, slots=True)
class Evaluated:
    """Decisions for n pairs plus the lookup that fed them."""

    decisions: DecisionColumns
    lookup: VehicleLookup

    def outcome_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.decisions.outcome, minlength=OUTCOMES)[:OUTCOMES]


@dataclass(frozen=True, slots=True)
class OnePair:
    """One decoded pair of a single check: plain values, no arrays."""

    key: bytes  # 16 bytes; zeros where invalid
    country: bytes  # 2 upper-case bytes
    day: int  # 0 where invalid
    invalid: int  # 0 or a Reason.INVALID_* value

    def valid_key(self) -> bytes:
        """The key, or nothing when the pair was unreadable (for the audit log)."""
        return b"" if self.invalid else self.key


@dataclass(frozen=True, slots=True)
class Single:
    """The answer for one pair, with the vehicle version it was decided on (None if none)."""

    decision: lez.rules.Verdict
    record: np.void | None


# ---- decoding ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackedPlates:
    """A packed plate column as flat bytes with per-plate starts and lengths."""

    data: npt.NDArray[np.uint8]
    starts: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    too_long: npt.NDArray[np.bool_]


def plate_column(
    data: bytes, offsets: bytes, width: int, n: int, max_plate_bytes: int
) -> PackedPlates:
    """Decode a packed plate column (fixed width or uint32 offsets) without copying the bytes.

    Plates longer than `max_plate_bytes` are cut there and flagged `too_long` (INVALID_PLATE).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if not offsets:
        if width <= 0:
            raise InvalidRequest("plates need either offsets or a fixed width")
        if width > max_plate_bytes:
            raise InvalidRequest(f"plate width {width} exceeds the limit of {max_plate_bytes}")
        if len(raw) != n * width:
            raise InvalidRequest(f"plates hold {len(raw)} bytes; expected {n} x {width}")
        starts = np.arange(n, dtype=np.int64) * width
        lengths = np.full(n, width, dtype=np.int64)  # NUL padding counts as a separator
        return PackedPlates(raw, starts, lengths, np.zeros(n, dtype=np.bool_))
    if len(offsets) != 4 * (n + 1):
        raise InvalidRequest(f"plate offsets must hold {n + 1} uint32 values")
    off = np.frombuffer(offsets, dtype="<u4").astype(np.int64)
    lengths = np.diff(off)
    if off[0] != 0 or off[-1] != len(raw) or (lengths < 0).any():
        raise InvalidRequest("plate offsets must start at 0, rise, and end at the data length")
    too_long = lengths > max_plate_bytes
    return PackedPlates(raw, off[:-1], np.minimum(lengths, max_plate_bytes), too_long)


def country_matrix(countries: bytes, n: int) -> npt.NDArray[np.uint8]:
    """(n, 2) upper-case country codes; empty means all BE."""
    if not countries:
        return np.broadcast_to(BE, (n, COUNTRY_BYTES))
    if len(countries) != COUNTRY_BYTES * n:
        raise InvalidRequest(f"countries hold {len(countries)} bytes; expected {n} x 2")
    mat = np.frombuffer(countries, dtype=np.uint8).reshape(n, COUNTRY_BYTES)
    lower = (mat >= ord("a")) & (mat <= ord("z"))
    if lower.any():
        mat = mat - (lower * 32).astype(np.uint8)
    return mat


def day_column(days: bytes, n: int) -> npt.NDArray[np.int32]:
    if len(days) != 4 * n:
        raise InvalidRequest(f"days hold {len(days)} bytes; expected {n} little-endian int32")
    return np.frombuffer(days, dtype="<i4").astype(np.int32, copy=False)


def _day_invalid(days: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    return (days < EARLIEST_DAY) | (days > LATEST_DAY)


def chunk_size(chunk: Any) -> int:
    """Number of pairs a CheckChunk claims (from its day column)."""
    return len(chunk.days) // 4


def check_chunk_size(n: int, max_chunk_pairs: int) -> None:
    if n > max_chunk_pairs:
        raise BatchTooLarge(n, max_chunk_pairs)


def decode_plates(
    keyer: PlateKeyer,
    plates: PackedPlates,
    countries: npt.NDArray[np.uint8],
    days: npt.NDArray[np.int32],
) -> Pairs:
    """Validate, normalise and key n plates in one pass (`PlateKeyer.normalise_and_key`)."""
    n = len(days)
    _, rule, keys = keyer.normalise_and_key(plates.data, plates.starts, plates.lengths, countries)
    invalid = np.zeros(n, dtype=np.uint8)
    invalid[_day_invalid(days)] = Reason.INVALID_DAY
    invalid[(rule != PlateRule.OK) | plates.too_long] = Reason.INVALID_PLATE
    invalid[rule == PlateRule.BAD_COUNTRY] = Reason.INVALID_COUNTRY
    if invalid.any():
        keys = keys.copy()
        keys[invalid != 0] = 0
        days = np.where(invalid == 0, days, 0).astype(np.int32)
    return Pairs(keys=keys, countries=countries, days=days, invalid=invalid)


def decode_keys(
    keys: bytes, countries: npt.NDArray[np.uint8], days: npt.NDArray[np.int32]
) -> Pairs:
    """Pairs from pre-pseudonymised keys: no normalisation, no keying."""
    n = len(days)
    if len(keys) != KEY_BYTES * n:
        raise InvalidRequest(f"keys hold {len(keys)} bytes; expected {n} x {KEY_BYTES}")
    mat = np.frombuffer(keys, dtype=np.uint8).reshape(n, KEY_BYTES)
    letters = (countries >= ord("A")) & (countries <= ord("Z"))
    invalid = np.zeros(n, dtype=np.uint8)
    invalid[_day_invalid(days)] = Reason.INVALID_DAY
    invalid[~letters.all(axis=1)] = Reason.INVALID_COUNTRY
    if invalid.any():
        days = np.where(invalid == 0, days, 0).astype(np.int32)
    return Pairs(keys=mat, countries=countries, days=days, invalid=invalid)


# ---- deciding ------------------------------------------------------------------------------


def evaluate(
    snap: Snapshot,
    revision: Any,
    zone_id: int,
    pairs: Pairs,
    claimed_first_registration: npt.NDArray[np.int32] | None = None,
) -> Evaluated:
    """Look up and decide n pairs on one snapshot; INVALID rows are forced INVALID."""
    lookup = snap.vehicles_on(pairs.keys, pairs.days)
    reg_query, reg_rows = snap.registrations_of(pairs.keys)
    c = pairs.countries
    belgian = (c[:, 0] == BE[0]) & (c[:, 1] == BE[1])
    dutch = (c[:, 0] == NL[0]) & (c[:, 1] == NL[1])
    batch = BatchInput(
        records=lookup.records,
        found=lookup.found,
        known=lookup.known,
        days=pairs.days,
        belgian=belgian,
        dutch=dutch,
        invalid=pairs.invalid,
        reg_query=reg_query,
        reg_rows=reg_rows,
        claimed_first_registration=claimed_first_registration,
    )
    decisions = lez.rules.evaluate(revision, zone_id, batch)
    bad = pairs.invalid != 0
    if bad.any():
        decisions.outcome[bad] = Outcome.INVALID
        decisions.reason[bad] = pairs.invalid[bad]
        decisions.allowed_until[bad] = DAY_UNKNOWN
    return Evaluated(decisions=decisions, lookup=lookup)


def decode_one_plate(
    keyer: PlateKeyer, raw: str, country: str, day: int, max_plate_bytes: int
) -> OnePair:
    """One plate through the scalar path (`lez.plates.try_normalise`, `PlateKeyer.key`): the same
    answer as `decode_plates` (property-tested in lez) at a fraction of the per-call cost."""
    invalid = 0
    text, rule = try_normalise(raw, country)
    if day < EARLIEST_DAY or day > LATEST_DAY:
        invalid = Reason.INVALID_DAY
    if rule is not PlateRule.OK or len(raw.encode("utf-8", "replace")) > max_plate_bytes:
        invalid = Reason.INVALID_PLATE
    if rule is PlateRule.BAD_COUNTRY:
        invalid = Reason.INVALID_COUNTRY
    cty = country.upper() if rule is not PlateRule.BAD_COUNTRY else "??"
    key = bytes(KEY_BYTES) if invalid else keyer.key(cty, text)
    return OnePair(
        key=key,
        country=cty.encode("ascii", "replace")[:COUNTRY_BYTES],
        day=0 if invalid else day,
        invalid=int(invalid),
    )


def decode_one_key(key: bytes, country: str, day: int) -> OnePair:
    """One pre-pseudonymised key (`len(key)` checked by the caller): the same validation as
    `decode_keys` and `decode_one_plate` (country by `lez.plates.normalise_country`, day range),
    no keying."""
    invalid = 0
    if day < EARLIEST_DAY or day > LATEST_DAY:
        invalid = Reason.INVALID_DAY
    try:
        cty = normalise_country(country)
    except InvalidPlate:
        cty, invalid = "??", Reason.INVALID_COUNTRY
    return OnePair(
        key=bytes(KEY_BYTES) if invalid else key,
        country=cty.encode("ascii"),
        day=0 if invalid else day,
        invalid=int(invalid),
    )


def evaluate_single(
    snap: Snapshot, revision: Any, zone_id: int, pair: OnePair, claimed: int | None = None
) -> Single:
    """One pair through the engine's single-check path (`lez.rules.decide_one`: the compiled
    tables read with scalar arithmetic), which the engine's property tests hold equal to
    `evaluate`. No arrays are set up: the vehicle and its registrations come from the warm key
    columns with a few scalar reads."""
    if pair.invalid:
        one = lez.rules.Verdict(Outcome.INVALID, pair.invalid, DAY_UNKNOWN, 0, 0, 0)
        return Single(decision=one, record=None)
    history = snap.versions_of(pair.key)
    at = version_on(history, pair.day)
    record = history[at] if at is not None else None
    one = lez.rules.decide_one(
        revision,
        zone_id,
        record,
        len(history) > 0,
        pair.day,
        pair.country == b"BE",
        pair.country == b"NL",
        0,
        snap.registrations_for(pair.key),
        claimed,
    )
    return Single(decision=one, record=record)


# ---- encoding ------------------------------------------------------------------------------


def _b(values: npt.NDArray[Any], dtype: str) -> bytes:
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def result_columns(ev: Evaluated, *, technical: bool) -> dict[str, Any]:
    """The DecisionChunk column fields (bytes) for n decisions; minimised unless `technical`."""
    d = ev.decisions
    n = len(d.outcome)
    cols: dict[str, Any] = {
        "count": n,
        "outcome": _b(d.outcome, "u1"),
        "allowed_until": _b(d.allowed_until, "<i4"),
        "euro": _b(np.where(d.outcome == Outcome.COMBINATION_MISMATCH, 0, d.euro), "u1"),
    }
    if technical:
        rec = ev.lookup.records
        mismatch = d.outcome == Outcome.COMBINATION_MISMATCH
        if mismatch.any():  # no vehicle data where the combination does not match
            rec = rec.copy()
            rec[mismatch] = empty(int(mismatch.sum()))
        cols["reason"] = _b(d.reason, "u1")
        cols["derived"] = _b(d.derived, "u1")
        cols["technical"] = {
            "category": _b(d.category, "u1"),
            "fuel": _b(rec["fuel"], "u1"),
            "first_registration": _b(rec["first_registration"], "<i4"),
            "max_mass_kg": _b(rec["max_mass"], "<u4"),
            "co2_g_km": _b(rec["co2"], "<u2"),
            "power_kw": _b(rec["power_kw"], "<u2"),
        }
    else:
        cols["reason"] = bytes(n)
        cols["derived"] = bytes(n)
    return cols
