"""The packed columns of `CheckStream`, hidden from callers, and the client's value types.

A batch travels as chunks of packed columns (proto `CheckChunk`): plates as one bytes blob with
little-endian uint32 offsets (or fixed-width NUL-padded), or 16-byte pseudonymised keys;
countries as 2 ASCII bytes each; days as little-endian int32 day numbers. Answers come back as
`DecisionChunk` columns in the same order. This module owns:

- `Pairs`: n aligned (plate or key, country, day) columns, built from tuples, sequences, NumPy
  arrays or already packed plates, sliced into chunks without copying plates one by one;
- `to_day_number`: what the clients accept as a day (date, aware datetime -> Brussels day,
  ISO text, day number); unreadable days become the unknown sentinel, which the server answers
  per item with OUTCOME_INVALID / REASON_INVALID_DAY instead of failing the batch;
- `Decision`, `TechnicalData`, `ResultChunk`, `BatchResult`, `BatchSummary`: readable answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lez.api.v1 import access_pb2 as pb
from lez.days import DAY_OPEN, DAY_UNKNOWN, brussels_day, from_day, parse_day, to_day
from lez.plates import BELGIUM

KEY_BYTES: Final = 16
COUNTRY_BYTES: Final = 2
UNREADABLE_COUNTRY: Final = b"??"
"""Sent for a country that is not two ASCII characters: the server answers INVALID_COUNTRY."""

# Outcome and Reason numbers are dense from 0 (the proto says they never change), so a tuple
# indexed by number names them; a test checks the density.
OUTCOME_NAMES: Final[tuple[str, ...]] = tuple(
    name.removeprefix("OUTCOME_") for name, _v in sorted(pb.Outcome.items(), key=lambda i: i[1])
)
REASON_NAMES: Final[tuple[str, ...]] = tuple(
    name.removeprefix("REASON_") for name, _v in sorted(pb.Reason.items(), key=lambda i: i[1])
)
DERIVED_FLAGS: Final[tuple[tuple[int, str], ...]] = tuple(
    (int(v), pb.Derived.Name(v).removeprefix("DERIVED_")) for v in pb.Derived.values() if v
)
CHANGE_NAMES: Final[dict[int, str]] = {
    int(v): pb.Change.Name(v).removeprefix("CHANGE_") for v in pb.Change.values()
}


def outcome_name(value: int) -> str:
    """`ALLOWED`, `NOT_ALLOWED`, ... for an Outcome number."""
    return OUTCOME_NAMES[value] if 0 <= value < len(OUTCOME_NAMES) else f"OUTCOME_{value}"


def outcome_value(name: str) -> int:
    """The Outcome number of a name with or without the `OUTCOME_` prefix."""
    return int(pb.Outcome.Value("OUTCOME_" + name.strip().upper().removeprefix("OUTCOME_")))


def reason_name(value: int) -> str:
    """`MEETS_CRITERIA`, ... for a Reason number."""
    return REASON_NAMES[value] if 0 <= value < len(REASON_NAMES) else f"REASON_{value}"


def reason_value(name: str) -> int:
    """The Reason number of a name with or without the `REASON_` prefix."""
    return int(pb.Reason.Value("REASON_" + name.strip().upper().removeprefix("REASON_")))


def derived_names(bits: int) -> frozenset[str]:
    """The names of the `Derived` bits set in `bits`."""
    return frozenset(name for bit, name in DERIVED_FLAGS if bits & bit)


# ---- days -----------------------------------------------------------------------------------


def parse_when(text: str) -> int:
    """Day number of `YYYY-MM-DD` or of an ISO 8601 timestamp (its Brussels calendar day).

    Raises ValueError saying what is expected; never echoes the input.
    """
    text = text.strip()
    if "T" in text or " " in text:
        try:
            moment = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            raise ValueError(
                "expected an ISO 8601 timestamp such as 2016-06-02T18:36:12.345+01:00"
            ) from None
        return brussels_day(moment)
    return parse_day(text)


def to_day_number(value: object) -> int:
    """A day number from a date, datetime, ISO text or int; DAY_UNKNOWN when unreadable."""
    if isinstance(value, dt.datetime):
        return brussels_day(value)
    if isinstance(value, dt.date):
        return to_day(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return parse_when(value)
        except ValueError:
            return DAY_UNKNOWN
    return DAY_UNKNOWN


def day_or_none(day: int) -> dt.date | None:
    """The date of a day number; None for the sentinels (unknown, open)."""
    return None if day in (DAY_UNKNOWN, DAY_OPEN) else from_day(day)


def date_text(value: dt.date | str | None) -> str:
    """ISO text for a request field; '' for None."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return from_day(brussels_day(value)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value.strip()


# ---- the input columns ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackedPlates:
    """Plates as one blob plus n + 1 offsets (the wire form; Arrow string arrays have it)."""

    data: bytes
    offsets: npt.NDArray[np.uint32]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def slice(self, start: int, stop: int) -> tuple[bytes, bytes]:
        """`data` and `offsets` bytes of rows [start, stop)."""
        off = self.offsets[start : stop + 1]
        a, b = int(off[0]), int(off[-1])
        return self.data[a:b], (off - np.uint32(a)).astype("<u4").tobytes()


def pack_plates(plates: Sequence[str] | npt.NDArray[Any]) -> PackedPlates:
    """Pack plates (str sequence, or a NumPy array of str, bytes or objects) with offsets."""
    if isinstance(plates, np.ndarray) and plates.dtype.kind == "S":
        width = plates.dtype.itemsize
        mat = np.frombuffer(np.ascontiguousarray(plates).tobytes(), dtype=np.uint8)
        mat = mat.reshape(len(plates), width) if width else mat.reshape(len(plates), 0)
        lengths = (mat != 0).sum(axis=1) if width else np.zeros(len(plates), dtype=np.int64)
        # Fixed-width bytes are NUL-padded at the end: keep the non-NUL prefix of each row.
        keep = np.arange(width)[None, :] < lengths[:, None]
        data = mat[keep].tobytes()
        return PackedPlates(data, _offsets(lengths))
    items = [p if isinstance(p, str) else _as_text(p) for p in plates]
    joined = "".join(items)
    data = joined.encode("utf-8", "replace")
    if len(data) == len(joined):  # all ASCII: byte lengths are string lengths
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        return PackedPlates(data, _offsets(lengths))
    raw = [p.encode("utf-8", "replace") for p in items]
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    return PackedPlates(b"".join(raw), _offsets(lengths))


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _offsets(lengths: npt.NDArray[Any]) -> npt.NDArray[np.uint32]:
    off = np.zeros(len(lengths) + 1, dtype=np.uint32)
    np.cumsum(lengths, out=off[1:])
    return off


def pack_countries(countries: Sequence[str | None] | npt.NDArray[Any] | None, n: int) -> bytes:
    """n x 2 ASCII bytes (b'' when all are BE); unreadable ones become '??'."""
    if countries is None:
        return b""
    if (
        isinstance(countries, np.ndarray)
        and countries.dtype.kind == "S"
        and countries.dtype.itemsize == COUNTRY_BYTES
    ):
        return np.ascontiguousarray(countries).tobytes()
    if len(countries) != n:
        raise ValueError(f"{len(countries)} countries for {n} pairs")
    if isinstance(countries, np.ndarray) and countries.dtype.kind == "U":
        flat = countries.astype("U2")
        ok = np.char.str_len(countries) == COUNTRY_BYTES
        try:
            out = flat.astype("S2")
        except UnicodeEncodeError:
            return pack_countries(countries.tolist(), n)
        out[~ok] = UNREADABLE_COUNTRY
        return out.tobytes()
    parts: list[bytes] = []
    for c in countries:
        text = BELGIUM if c is None or c == "" else _as_text(c).strip()
        raw = text.encode("ascii", "replace")
        parts.append(raw if len(raw) == COUNTRY_BYTES else UNREADABLE_COUNTRY)
    return b"".join(parts)


def pack_days(days: Sequence[object] | npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """int32 day numbers from day numbers, dates, datetimes or ISO text."""
    if isinstance(days, np.ndarray):
        if days.dtype.kind in "iu":
            return days.astype(np.int32)
        if days.dtype.kind == "M":
            return days.astype("datetime64[D]").astype(np.int64).astype(np.int32)
    return np.fromiter((to_day_number(d) for d in days), dtype=np.int32, count=len(days))


@dataclass(frozen=True, slots=True)
class Pairs:
    """n aligned pairs: plates (packed) or pseudonymised keys, countries, days.

    Build with `Pairs.of(plates, countries, days)` or `Pairs.of_keys(keys, countries, days,
    key_id=...)`; `countries` None means all BE.
    """

    days: npt.NDArray[np.int32]
    countries: bytes = b""
    plates: PackedPlates | None = None
    keys: npt.NDArray[np.uint8] | None = None
    key_id: str = ""

    def __len__(self) -> int:
        return len(self.days)

    @classmethod
    def of(
        cls,
        plates: Sequence[str] | npt.NDArray[Any] | PackedPlates,
        countries: Sequence[str | None] | npt.NDArray[Any] | None,
        days: Sequence[object] | npt.NDArray[Any],
    ) -> Pairs:
        packed = plates if isinstance(plates, PackedPlates) else pack_plates(plates)
        day_col = pack_days(days)
        if len(packed) != len(day_col):
            raise ValueError(f"{len(packed)} plates for {len(day_col)} days")
        return cls(days=day_col, countries=pack_countries(countries, len(day_col)), plates=packed)

    @classmethod
    def of_keys(
        cls,
        keys: bytes | npt.NDArray[np.uint8] | Sequence[bytes],
        countries: Sequence[str | None] | npt.NDArray[Any] | None,
        days: Sequence[object] | npt.NDArray[Any],
        *,
        key_id: str,
    ) -> Pairs:
        if isinstance(keys, bytes):
            mat = np.frombuffer(keys, dtype=np.uint8)
        elif isinstance(keys, np.ndarray):
            mat = np.ascontiguousarray(keys, dtype=np.uint8)
        else:
            mat = np.frombuffer(b"".join(keys), dtype=np.uint8)
        if mat.size % KEY_BYTES:
            raise ValueError(f"keys must be {KEY_BYTES} bytes each")
        mat = mat.reshape(-1, KEY_BYTES)
        day_col = pack_days(days)
        if len(mat) != len(day_col):
            raise ValueError(f"{len(mat)} keys for {len(day_col)} days")
        if not key_id:
            raise ValueError("pre-pseudonymised keys need the key id of the HMAC key")
        return cls(
            days=day_col,
            countries=pack_countries(countries, len(day_col)),
            keys=mat,
            key_id=key_id,
        )

    def chunk(
        self, start: int, stop: int, *, chunk_id: int, zone: str, ruleset: str
    ) -> pb.CheckChunk:
        """The CheckChunk of rows [start, stop)."""
        msg = pb.CheckChunk(
            zone=zone,
            ruleset_revision=ruleset,
            chunk_id=chunk_id,
            days=self.days[start:stop].astype("<i4").tobytes(),
            countries=self.countries[COUNTRY_BYTES * start : COUNTRY_BYTES * stop],
        )
        if self.keys is not None:
            msg.keys = self.keys[start:stop].tobytes()
            msg.key_id = self.key_id
        else:
            assert self.plates is not None
            data, offsets = self.plates.slice(start, stop)
            msg.plates.CopyFrom(pb.PlateColumn(data=data, offsets=offsets))
        return msg


def pairs_from_items(items: Iterable[Sequence[object]]) -> Pairs:
    """Pairs from (plate, country, day) tuples; country None/'' means BE."""
    plates: list[str] = []
    countries: list[str | None] = []
    days: list[object] = []
    for item in items:
        if len(item) != 3:
            raise ValueError("each item must be (plate, country, day)")
        plate, country, day = item
        plates.append(_as_text(plate))
        countries.append(None if country is None else _as_text(country))
        days.append(day)
    all_be = all(c in (None, "", BELGIUM) for c in countries)
    return Pairs.of(plates, None if all_be else countries, days)


def iter_pairs(
    source: Pairs | Iterable[Sequence[object]], chunk_size: int
) -> Iterator[tuple[Pairs, int, int]]:
    """(pairs, start, stop) slices of at most `chunk_size` rows, reading iterables lazily."""
    if isinstance(source, Pairs):
        for start in range(0, len(source), chunk_size):
            yield source, start, min(start + chunk_size, len(source))
        return
    buffer: list[Sequence[object]] = []
    for item in source:
        buffer.append(item)
        if len(buffer) >= chunk_size:
            part = pairs_from_items(buffer)
            buffer = []
            yield part, 0, len(part)
    if buffer:
        part = pairs_from_items(buffer)
        yield part, 0, len(part)


# ---- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TechnicalData:
    """Technical data a decision used (not sent to the public role)."""

    category: str | None
    fuel: str | None
    first_registration: dt.date | None
    max_mass_kg: int | None
    co2_g_km: int | None
    power_kw: int | None
    version_valid_from: dt.date | None

    @classmethod
    def from_pb(cls, msg: pb.TechnicalData) -> TechnicalData:
        return cls(
            category=msg.category or None,
            fuel=msg.fuel or None,
            first_registration=_date_or_none(msg.first_registration),
            max_mass_kg=msg.max_mass_kg or None,
            co2_g_km=msg.co2_g_km or None,
            power_kw=msg.power_kw or None,
            version_valid_from=_date_or_none(msg.version_valid_from),
        )


def _date_or_none(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One answer: outcome and reason names, allowed-until, euro norm, derived flags."""

    outcome: str
    reason: str | None
    allowed_until: dt.date | None
    open_ended: bool
    euro: str | None
    derived: frozenset[str]
    technical: TechnicalData | None
    snapshot_id: str
    revision: str
    zone: str = ""
    date: dt.date | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "ALLOWED"

    @classmethod
    def from_pb(
        cls,
        msg: pb.Decision,
        *,
        snapshot_id: str,
        revision: str,
        zone: str = "",
        date: str = "",
    ) -> Decision:
        return cls(
            outcome=outcome_name(int(msg.outcome)),
            reason=reason_name(int(msg.reason)) if msg.reason else None,
            allowed_until=_date_or_none(msg.allowed_until),
            open_ended=bool(msg.open_ended),
            euro=msg.euro or None,
            derived=derived_names(int(msg.derived)),
            technical=TechnicalData.from_pb(msg.technical) if msg.HasField("technical") else None,
            snapshot_id=snapshot_id,
            revision=revision,
            zone=zone,
            date=_date_or_none(date),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckItem:
    """An earlier decision to re-evaluate (appeals)."""

    plate: str | None = None
    key: bytes | None = None
    country: str = BELGIUM
    zone: str
    date: dt.date | str
    outcome: str
    reason: str | None = None
    euro: str | None = None
    snapshot_id: str = ""
    revision: str = ""

    def to_pb(self) -> pb.EarlierDecision:
        msg = pb.EarlierDecision(
            country=self.country,
            zone=self.zone,
            date=date_text(self.date),
            outcome=outcome_value(self.outcome),  # type: ignore[arg-type]
            reason=reason_value(self.reason) if self.reason else 0,  # type: ignore[arg-type]
            euro=self.euro or "",
            snapshot_id=self.snapshot_id,
            ruleset_revision=self.revision,
        )
        if self.key is not None:
            msg.key = self.key
        else:
            msg.plate = self.plate or ""
        return msg


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckResult:
    """The re-evaluation of one earlier decision."""

    index: int
    previous_outcome: str
    previous_reason: str | None
    current: Decision
    outcome_changed: bool
    changes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckAnswer:
    """The answer to a Recheck."""

    results: tuple[RecheckResult, ...]
    snapshot_id: str
    revision: str
    mutation_watermark: str

    @classmethod
    def from_pb(cls, msg: pb.RecheckResponse) -> RecheckAnswer:
        results = tuple(
            RecheckResult(
                index=int(r.index),
                previous_outcome=outcome_name(int(r.previous_outcome)),
                previous_reason=reason_name(int(r.previous_reason)) if r.previous_reason else None,
                current=Decision.from_pb(
                    r.current, snapshot_id=msg.snapshot_id, revision=msg.ruleset_revision
                ),
                outcome_changed=bool(r.outcome_changed),
                changes=tuple(CHANGE_NAMES.get(int(c), str(int(c))) for c in r.changes),
            )
            for r in msg.results
        )
        return cls(
            results=results,
            snapshot_id=msg.snapshot_id,
            revision=msg.ruleset_revision,
            mutation_watermark=msg.mutation_watermark,
        )


@dataclass(frozen=True, slots=True)
class ResultChunk:
    """Decisions for input rows [first_index, first_index + count), as NumPy columns.

    `allowed_until` holds day numbers (open = 2147483647, unknown = -2147483648); `euro` holds
    ids of the server's euro code list (ServerInfo); `technical` is empty for the public role.
    """

    first_index: int
    outcome: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]
    allowed_until: npt.NDArray[np.int32]
    euro: npt.NDArray[np.uint8]
    derived: npt.NDArray[np.uint8]
    snapshot_id: str
    revision: str
    technical: Mapping[str, npt.NDArray[Any]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.outcome)


TECHNICAL_COLUMNS: Final = (
    ("category", "u1"),
    ("fuel", "u1"),
    ("first_registration", "<i4"),
    ("max_mass_kg", "<u4"),
    ("co2_g_km", "<u2"),
    ("power_kw", "<u2"),
)


def unpack_chunk(msg: pb.DecisionChunk, first_index: int, expected: int) -> ResultChunk:
    """NumPy columns of a DecisionChunk; raises ValueError if a column has the wrong size."""
    n = int(msg.count)
    cols: dict[str, npt.NDArray[Any]] = {
        "outcome": np.frombuffer(msg.outcome, dtype=np.uint8),
        "reason": np.frombuffer(msg.reason, dtype=np.uint8)
        if msg.reason
        else np.zeros(n, dtype=np.uint8),
        "allowed_until": np.frombuffer(msg.allowed_until, dtype="<i4").astype(np.int32),
        "euro": np.frombuffer(msg.euro, dtype=np.uint8),
        "derived": np.frombuffer(msg.derived, dtype=np.uint8)
        if msg.derived
        else np.zeros(n, dtype=np.uint8),
    }
    if n != expected or any(len(v) != n for v in cols.values()):
        raise ValueError(f"a result chunk holds {n} rows for {expected} pairs sent")
    technical: dict[str, npt.NDArray[Any]] = {}
    if msg.HasField("technical"):
        for name, dtype in TECHNICAL_COLUMNS:
            raw = getattr(msg.technical, name)
            if raw:
                technical[name] = np.frombuffer(raw, dtype=dtype)
    return ResultChunk(
        first_index=first_index,
        snapshot_id=msg.snapshot_id,
        revision=msg.ruleset_revision,
        technical=technical,
        **cols,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSummary:
    """What a whole batch got: pairs, chunks, pairs per outcome, audit ids, timing."""

    pairs: int
    chunks: int
    outcomes: Mapping[str, int]
    audit_ids: tuple[str, ...]
    snapshot_ids: tuple[str, ...]
    revision: str
    seconds: float
    streams: int

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class BatchResult:
    """All decisions of a batch, aligned with the input rows, plus the summary."""

    outcome: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]
    allowed_until: npt.NDArray[np.int32]
    euro: npt.NDArray[np.uint8]
    derived: npt.NDArray[np.uint8]
    summary: BatchSummary

    def __len__(self) -> int:
        return len(self.outcome)

    def outcome_names(self) -> list[str]:
        return [OUTCOME_NAMES[v] for v in self.outcome.tolist()]

    def reason_names(self) -> list[str]:
        return [REASON_NAMES[v] for v in self.reason.tolist()]

    def allowed_until_dates(self) -> list[dt.date | None]:
        return [day_or_none(d) for d in self.allowed_until.tolist()]


class InputOrder:
    """Hands result chunks on in input order, whatever order they arrive in."""

    def __init__(self) -> None:
        self._waiting: dict[int, ResultChunk] = {}
        self._next = 0

    def add(self, part: ResultChunk) -> list[ResultChunk]:
        """The chunks that are next in input order now that `part` arrived (maybe none)."""
        self._waiting[part.first_index] = part
        ready: list[ResultChunk] = []
        while self._next in self._waiting:
            chunk = self._waiting.pop(self._next)
            self._next += chunk.count
            ready.append(chunk)
        return ready


class BatchCollector:
    """Gathers result chunks (in any order) into aligned columns for `BatchResult`."""

    def __init__(self) -> None:
        self.parts: list[ResultChunk] = []

    def add(self, part: ResultChunk) -> None:
        self.parts.append(part)

    def result(self, summary: BatchSummary) -> BatchResult:
        parts = sorted(self.parts, key=lambda p: p.first_index)
        n = sum(p.count for p in parts)

        def col(name: str, dtype: Any) -> npt.NDArray[Any]:
            out = np.empty(n, dtype=dtype)
            for p in parts:
                out[p.first_index : p.first_index + p.count] = getattr(p, name)
            return out

        return BatchResult(
            outcome=col("outcome", np.uint8),
            reason=col("reason", np.uint8),
            allowed_until=col("allowed_until", np.int32),
            euro=col("euro", np.uint8),
            derived=col("derived", np.uint8),
            summary=summary,
        )


def summarise(
    parts_outcomes: Iterable[npt.NDArray[np.uint8]],
    *,
    pairs: int,
    chunks: int,
    audit_ids: Iterable[str],
    snapshot_ids: Iterable[str],
    revision: str,
    seconds: float,
    streams: int,
) -> BatchSummary:
    """A summary counted on the client side from the outcome columns received."""
    counts = np.zeros(len(OUTCOME_NAMES), dtype=np.int64)
    for o in parts_outcomes:
        counts += np.bincount(o, minlength=len(OUTCOME_NAMES))[: len(OUTCOME_NAMES)]
    return BatchSummary(
        pairs=pairs,
        chunks=chunks,
        outcomes={OUTCOME_NAMES[i]: int(c) for i, c in enumerate(counts) if c},
        audit_ids=tuple(a for a in audit_ids if a),
        snapshot_ids=tuple(dict.fromkeys(s for s in snapshot_ids if s)),
        revision=revision,
        seconds=seconds,
        streams=streams,
    )


__all__ = [
    "BatchResult",
    "BatchSummary",
    "Decision",
    "PackedPlates",
    "Pairs",
    "RecheckAnswer",
    "RecheckItem",
    "RecheckResult",
    "ResultChunk",
    "TechnicalData",
]
