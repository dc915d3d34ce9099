"""The input of a batch: n aligned (plate or key, country, day) rows, packed the way
`CheckStream` carries them, and cut into chunk-sized slices.

On the wire (proto `CheckChunk`) plates travel as one UTF-8 blob with little-endian uint32
offsets (or fixed-width NUL-padded), or as 16-byte pseudonymised keys; countries as 2 ASCII
bytes each; days as little-endian int32 day numbers. This module owns:

- `JoinedPlates`: plates as one blob plus n + 1 offsets (`pack_plates` makes it from strings,
  NumPy arrays of str, bytes or objects; Arrow string arrays have this layout already);
- `pack_countries`, `pack_days`: the other two columns (unreadable values become '??' and the
  unknown day, which the server answers per row instead of failing the batch), and
  `pack_instants`: the moments of reads given as datetimes or ISO 8601 timestamps, sent as
  instants so the server derives the Brussels day and hour;
- `BatchRows`: the aligned columns, built from columns (`of`, `of_keys`) or from tuples
  (`rows_from_items`), and `row_slices`, which reads an iterable of tuples lazily, chunk by chunk.

The `CheckChunk` message of a slice is built by `clients.request_builders.chunk_request`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from clients.day_input import instant_ms, to_day_number
from lez.days import NO_INSTANT
from lez.plates import BELGIUM

KEY_BYTES: Final = 16
COUNTRY_BYTES: Final = 2
UNREADABLE_COUNTRY: Final = b"??"
"""Sent for a country that is not two ASCII characters: the server answers INVALID_COUNTRY."""


@dataclass(frozen=True, slots=True)
class JoinedPlates:
    """Plates as one blob plus n + 1 offsets (the wire form; Arrow string arrays have it)."""

    data: bytes
    offsets: npt.NDArray[np.uint32]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def slice(self, start: int, stop: int) -> tuple[bytes, bytes]:
        """`data` and `offsets` bytes of rows [start, stop)."""
        window = self.offsets[start : stop + 1]
        first, last = int(window[0]), int(window[-1])
        return self.data[first:last], (window - np.uint32(first)).astype("<u4").tobytes()


def pack_plates(plates: Sequence[str] | npt.NDArray[Any]) -> JoinedPlates:
    """Join plates (str sequence, or a NumPy array of str, bytes or objects) with offsets."""
    if isinstance(plates, np.ndarray) and plates.dtype.kind == "S":
        return _join_fixed_width(plates)
    items = [p if isinstance(p, str) else _as_text(p) for p in plates]
    joined = "".join(items)
    data = joined.encode("utf-8", "replace")
    if len(data) == len(joined):  # all ASCII: byte lengths are string lengths
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        return JoinedPlates(data, _offsets(lengths))
    encoded = [p.encode("utf-8", "replace") for p in items]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    return JoinedPlates(b"".join(encoded), _offsets(lengths))


def _join_fixed_width(plates: npt.NDArray[Any]) -> JoinedPlates:
    """Fixed-width bytes are NUL-padded at the end: keep the non-NUL prefix of each row."""
    width = plates.dtype.itemsize
    matrix = np.frombuffer(np.ascontiguousarray(plates).tobytes(), dtype=np.uint8)
    matrix = matrix.reshape(len(plates), width)
    lengths = (matrix != 0).sum(axis=1) if width else np.zeros(len(plates), dtype=np.int64)
    keep = np.arange(width)[None, :] < lengths[:, None]
    return JoinedPlates(matrix[keep].tobytes(), _offsets(lengths))


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _offsets(lengths: npt.NDArray[Any]) -> npt.NDArray[np.uint32]:
    offsets = np.zeros(len(lengths) + 1, dtype=np.uint32)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


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
        two_letters = countries.astype("U2")
        readable = np.char.str_len(countries) == COUNTRY_BYTES
        try:
            packed = two_letters.astype("S2")
        except UnicodeEncodeError:
            return pack_countries(countries.tolist(), n)
        packed[~readable] = UNREADABLE_COUNTRY
        return packed.tobytes()
    parts: list[bytes] = []
    for country in countries:
        text = BELGIUM if country is None or country == "" else _as_text(country).strip()
        ascii_code = text.encode("ascii", "replace")
        parts.append(ascii_code if len(ascii_code) == COUNTRY_BYTES else UNREADABLE_COUNTRY)
    return b"".join(parts)


def pack_days(days: Sequence[object] | npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """int32 day numbers from day numbers, dates, datetimes or ISO text."""
    if isinstance(days, np.ndarray):
        if days.dtype.kind in "iu":
            return days.astype(np.int32)
        if days.dtype.kind == "M":
            return days.astype("datetime64[D]").astype(np.int64).astype(np.int32)
    return np.fromiter((to_day_number(d) for d in days), dtype=np.int32, count=len(days))


def pack_instants(values: Sequence[object]) -> npt.NDArray[np.int64] | None:
    """ms since the epoch of the values that are moments (datetimes, ISO 8601 timestamps),
    NO_INSTANT for the others (dates, day numbers, unreadable text); None when none is."""
    out = np.fromiter((instant_ms(v) for v in values), dtype=np.int64, count=len(values))
    return out if (out != NO_INSTANT).any() else None


@dataclass(frozen=True, slots=True)
class BatchRows:
    """n aligned rows of a batch: plates (joined) or pseudonymised keys, countries, days, and
    optionally the instants of the reads (camera timestamps, ms since the epoch in UTC; the
    server then derives each row's Brussels day and hour; rows with `NO_INSTANT` go by their
    day).

    Build with `BatchRows.of(plates, countries, days)` or `BatchRows.of_keys(keys, countries,
    days, key_id=...)`; `countries` None means all BE.
    """

    days: npt.NDArray[np.int32]
    countries: bytes = b""
    plates: JoinedPlates | None = None
    keys: npt.NDArray[np.uint8] | None = None
    key_id: str = ""
    instants: npt.NDArray[np.int64] | None = None  # ms since the epoch (UTC); NO_INSTANT: by day

    def __len__(self) -> int:
        return len(self.days)

    @classmethod
    def of(
        cls,
        plates: Sequence[str] | npt.NDArray[Any] | JoinedPlates,
        countries: Sequence[str | None] | npt.NDArray[Any] | None,
        days: Sequence[object] | npt.NDArray[Any],
    ) -> BatchRows:
        joined = plates if isinstance(plates, JoinedPlates) else pack_plates(plates)
        day_numbers = pack_days(days)
        if len(joined) != len(day_numbers):
            raise ValueError(f"{len(joined)} plates for {len(day_numbers)} days")
        moments = days if isinstance(days, np.ndarray) and days.dtype.kind in "iuM" else None
        return cls(
            days=day_numbers,
            countries=pack_countries(countries, len(day_numbers)),
            plates=joined,
            instants=pack_instants(list(days)) if moments is None else None,
        )

    @classmethod
    def of_keys(
        cls,
        keys: bytes | npt.NDArray[np.uint8] | Sequence[bytes],
        countries: Sequence[str | None] | npt.NDArray[Any] | None,
        days: Sequence[object] | npt.NDArray[Any],
        *,
        key_id: str,
    ) -> BatchRows:
        if isinstance(keys, bytes):
            key_bytes = np.frombuffer(keys, dtype=np.uint8)
        elif isinstance(keys, np.ndarray):
            key_bytes = np.ascontiguousarray(keys, dtype=np.uint8)
        else:
            key_bytes = np.frombuffer(b"".join(keys), dtype=np.uint8)
        if key_bytes.size % KEY_BYTES:
            raise ValueError(f"keys must be {KEY_BYTES} bytes each")
        key_matrix = key_bytes.reshape(-1, KEY_BYTES)
        day_numbers = pack_days(days)
        if len(key_matrix) != len(day_numbers):
            raise ValueError(f"{len(key_matrix)} keys for {len(day_numbers)} days")
        if not key_id:
            raise ValueError("pre-pseudonymised keys need the key id of the HMAC key")
        return cls(
            days=day_numbers,
            countries=pack_countries(countries, len(day_numbers)),
            keys=key_matrix,
            key_id=key_id,
        )


BatchInput = BatchRows | Iterable[Sequence[object]]
"""What a batch call takes: `BatchRows`, or any iterable of (plate, country, day) tuples."""


def rows_from_items(items: Iterable[Sequence[object]]) -> BatchRows:
    """BatchRows from (plate, country, day) tuples; country None/'' means BE."""
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
    all_belgian = all(c in (None, "", BELGIUM) for c in countries)
    return BatchRows.of(plates, None if all_belgian else countries, days)


def row_slices(source: BatchInput, chunk_size: int) -> Iterator[tuple[BatchRows, int, int]]:
    """(rows, start, stop) slices of at most `chunk_size` rows, reading iterables lazily."""
    if isinstance(source, BatchRows):
        for start in range(0, len(source), chunk_size):
            yield source, start, min(start + chunk_size, len(source))
        return
    buffer: list[Sequence[object]] = []
    for item in source:
        buffer.append(item)
        if len(buffer) >= chunk_size:
            part = rows_from_items(buffer)
            buffer = []
            yield part, 0, len(part)
    if buffer:
        part = rows_from_items(buffer)
        yield part, 0, len(part)
