"""Plate normalisation and validation: the single definition of what a plate is.

A plate as a camera, a citizen or the register writes it (`1-abc-234`, `1 ABC 234`, `1.ABC.234`)
becomes its *normalised* form: upper case, separators removed (`1ABC234`), the form that is
keyed by `lez.keys`. Separators are ASCII space, tab, `-`, `.` and NUL (padding of packed
columns). Everything else outside `A-Z0-9` is a bad character.

Rules (docs/rules.md#plate-formats; an official DIV normalisation spec was NOT FOUND, so the
alphabet A-Z0-9 is the inference documented there):
- Belgian plates (country `BE`): 2 to 8 characters once normalised (a personalised plate is at
  most 8 including hyphens, a standard `1-ABC-234` is 7 without them), at least one letter
  (digits-only plates are reserved for the royal family and are not in the register).
- Foreign plates: 1 to `FOREIGN_MAX_LEN` characters; the country is an ISO 3166 alpha-2 code.

Normalisation exists three times, each kept for a figure (`python -m bench.single_paths`, one
core; hypothesis properties in tests/lez/test_plates.py and test_keys.py hold them equal):
- `try_normalise` (and `normalise`, which raises), scalar: about 1.6 us per plate, for single
  checks and imports, against about 75 us for `normalise_flat` on one plate (array set-up).
- `normalise_flat` (and `normalise_many` over a matrix), vectorised: about 0.15-0.18 us per plate
  on 100,000 plates against 1.8 us for `try_normalise` in a loop; the batch path wherever the
  native core is not built (it is optional at install time).
- the native core (`lez._hmac.normalise_keys`, through `lez.keys.PlateKeyer.normalise_and_key`)
  normalises and keys in one pass: about 0.13 us per plate, keys included, against about
  0.94 us for `normalise_flat` plus keying in Python.
Errors name the rule broken and never echo the plate.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final, NewType

import numpy as np
import numpy.typing as npt

from lez.errors import InvalidPlate
from lez.errors import could_hold_plate as could_hold_plate  # for callers outside the core

Plate = NewType("Plate", str)
"""A normalised plate: upper case A-Z0-9, no separators."""

PLATE_WIDTH: Final = 10
"""Width in bytes of a normalised plate in packed arrays (NUL padded)."""
BELGIAN_MIN_LEN: Final = 2
BELGIAN_MAX_LEN: Final = 8
FOREIGN_MAX_LEN: Final = PLATE_WIDTH
BELGIUM: Final = "BE"

_SEPARATORS: Final = frozenset(" \t-.\x00")
_SCALAR_TABLE: Final = {ord(c): None for c in _SEPARATORS} | {
    c: c - 32 for c in range(ord("a"), ord("z") + 1)
}
_PLATE_CHARS: Final = re.compile(r"[A-Z0-9]*")
_LETTER: Final = re.compile(r"[A-Z]")


class PlateRule(enum.IntEnum):
    """Why a plate was refused. 0 means accepted. Values travel in packed columns."""

    OK = 0
    EMPTY = 1
    BAD_CHARACTER = 2
    TOO_LONG = 3
    TOO_SHORT = 4
    NO_LETTER = 5
    BAD_COUNTRY = 6

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS: Final = {
    PlateRule.OK: "accepted",
    PlateRule.EMPTY: "the plate is empty once spaces, dashes and dots are removed",
    PlateRule.BAD_CHARACTER: "only letters A-Z, digits, spaces, dashes and dots are allowed",
    PlateRule.TOO_LONG: (
        f"a Belgian plate has at most {BELGIAN_MAX_LEN} letters and digits, "
        f"a foreign one at most {FOREIGN_MAX_LEN}"
    ),
    PlateRule.TOO_SHORT: f"a Belgian plate has at least {BELGIAN_MIN_LEN} letters and digits",
    PlateRule.NO_LETTER: "a Belgian plate has at least one letter",
    PlateRule.BAD_COUNTRY: "the country must be an ISO 3166 two-letter code such as BE or NL",
}


class PlateSeries(enum.IntEnum):
    """Which Belgian series a normalised plate belongs to (docs/rules.md#plate-formats)."""

    CURRENT = 1  # 1-ABC-234, 2-ABC-234 (Euro plate since 2010; 2- since 2021)
    CURRENT_DIGITS_FIRST = 2  # 9-123-ABC
    LETTER_PREFIX = 3  # G-ABC-123 tractors, M-/W- motorcycles, O- oldtimers, Q- trailers, ...
    TWO_LETTER = 4  # WX-16-ABC, UA-23-ABC (temporary)
    OLD_1973 = 5  # ABC-123 (1973-2008)
    OLD_2008 = 6  # 123-ABC (2008-2010)
    OLD_1962 = 7  # AB-123 (1962-1973)
    OLD_1953 = 8  # A-1234 / 1234-A (1953-1962)
    DIPLOMATIC = 9  # CD-...
    PERSONALISED = 10  # anything else with 2-8 characters and a letter
    FOREIGN = 11


_SERIES_PATTERNS: Final = (
    (PlateSeries.CURRENT, re.compile(r"[1-9][A-Z]{3}[0-9]{3}")),
    (PlateSeries.CURRENT_DIGITS_FIRST, re.compile(r"[1-9][0-9]{3}[A-Z]{3}")),
    (PlateSeries.DIPLOMATIC, re.compile(r"CD[A-Z]?[0-9]{1,4}")),
    (PlateSeries.LETTER_PREFIX, re.compile(r"[A-Z][A-Z]{3}[0-9]{3}")),
    (PlateSeries.TWO_LETTER, re.compile(r"[A-Z]{2}[0-9]{2}[A-Z]{3}")),
    (PlateSeries.OLD_1973, re.compile(r"[A-Z]{3}[0-9]{3}")),
    (PlateSeries.OLD_2008, re.compile(r"[0-9]{3}[A-Z]{3}")),
    (PlateSeries.OLD_1962, re.compile(r"[A-Z]{2}[0-9]{3}")),
    (PlateSeries.OLD_1953, re.compile(r"[A-Z][0-9]{4}|[0-9]{4}[A-Z]")),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalisedPlate:
    """A plate that passed validation, with its country. Its repr leaves the plate out (logs,
    tracebacks and assertion messages must not carry one)."""

    country: str
    plate: Plate = field(repr=False)

    @property
    def is_belgian(self) -> bool:
        return self.country == BELGIUM


def normalise_country(country: str) -> str:
    """Upper-case ISO alpha-2 country; raises InvalidPlate(BAD_COUNTRY) otherwise."""
    if not is_country_code(country):
        raise InvalidPlate(PlateRule.BAD_COUNTRY.name, PlateRule.BAD_COUNTRY.explanation)
    return country.upper()


def try_normalise(raw: str, country: str = BELGIUM) -> tuple[str, PlateRule]:
    """Normalise without raising: (normalised text or '', the rule broken or OK)."""
    if not is_country_code(country):
        return "", PlateRule.BAD_COUNTRY
    text = raw.translate(_SCALAR_TABLE)  # separators dropped, a-z upper-cased
    if not _PLATE_CHARS.fullmatch(text):
        return "", PlateRule.BAD_CHARACTER
    rule = _length_rule(len(text), _LETTER.search(text) is not None, country.upper())
    return (text if rule is PlateRule.OK else ""), rule


def normalise(raw: str, country: str = BELGIUM) -> NormalisedPlate:
    """Normalise and validate one plate; raises `InvalidPlate` naming the rule broken."""
    text, rule = try_normalise(raw, country)
    if rule is not PlateRule.OK:
        raise InvalidPlate(rule.name, rule.explanation)
    return NormalisedPlate(country=country.upper(), plate=Plate(text))


def series(plate: Plate) -> PlateSeries:
    """The Belgian series of a normalised Belgian plate (PERSONALISED when none matches)."""
    for kind, pattern in _SERIES_PATTERNS:
        if pattern.fullmatch(plate):
            return kind
    return PlateSeries.PERSONALISED


def is_country_code(country: str) -> bool:
    """Two ASCII letters, in any case (what `normalise_country` accepts)."""
    return len(country) == 2 and all("A" <= c <= "Z" or "a" <= c <= "z" for c in country)


def _length_rule(length: int, has_letter: bool, country: str) -> PlateRule:
    if length == 0:
        return PlateRule.EMPTY
    if country == BELGIUM:
        if length > BELGIAN_MAX_LEN:
            return PlateRule.TOO_LONG
        if length < BELGIAN_MIN_LEN:
            return PlateRule.TOO_SHORT
        if not has_letter:
            return PlateRule.NO_LETTER
        return PlateRule.OK
    return PlateRule.TOO_LONG if length > FOREIGN_MAX_LEN else PlateRule.OK


# ---- vectorised form -------------------------------------------------------------------------

_DROP: Final = 0
_BAD: Final = 0xFF


def _build_lut() -> npt.NDArray[np.uint8]:
    lut = np.full(256, _BAD, dtype=np.uint8)
    for c in range(ord("A"), ord("Z") + 1):
        lut[c] = c
        lut[c + 32] = c  # lower case
    for c in range(ord("0"), ord("9") + 1):
        lut[c] = c
    for ch in _SEPARATORS:
        lut[ord(ch)] = _DROP
    return lut


_LUT: Final = _build_lut()


def as_matrix(values: npt.ArrayLike, width: int | None = None) -> npt.NDArray[np.uint8]:
    """A packed (n, width) uint8 matrix from an array of `S` bytes or a list of str/bytes."""
    arr = np.asarray(values)
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "utf-8")
    if arr.dtype.kind != "S":
        raise TypeError("plates must be str or bytes")
    w = width or max(arr.dtype.itemsize, 1)
    fixed = arr.astype(f"S{w}")
    return fixed.view(np.uint8).reshape(len(fixed), w)


def countries_matrix(values: npt.ArrayLike, n: int) -> npt.NDArray[np.uint8]:
    """A (n, 2) uint8 matrix of upper-cased country codes; a scalar is broadcast."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "ascii", errors="replace") if arr.size else arr.astype("S2")
    mat = arr.astype("S2").view(np.uint8).reshape(len(arr), 2).copy()
    lower = (mat >= ord("a")) & (mat <= ord("z"))
    mat[lower] -= 32
    return mat


def normalise_many(
    plates: npt.NDArray[np.uint8], countries: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Vectorised `try_normalise` over a packed (n, w) plate matrix and an (n, 2) country matrix.

    Returns the normalised plates as an (n, PLATE_WIDTH) NUL-padded matrix (all NUL where
    refused) and the `PlateRule` of each row. Agrees with `try_normalise` row by row. The matrix is
    read as `normalise_flat` input: one buffer, each row a plate of `w` bytes (NULs dropped).
    """
    n, width = plates.shape
    data = np.ascontiguousarray(plates, dtype=np.uint8).reshape(-1)
    starts = np.arange(n, dtype=np.int64) * width
    lengths = np.full(n, width, dtype=np.int64)
    return normalise_flat(data, starts, lengths, countries)


def _segment_sum(
    values: npt.NDArray[np.bool_], starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Sum of `values` over each segment [start, start + length) (0 for empty segments)."""
    if len(values) == 0:
        return np.zeros(len(starts), dtype=np.int64)
    total = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, dtype=np.int64, out=total[1:])
    result: npt.NDArray[np.int64] = total[starts + lengths] - total[starts]
    return result


def normalise_flat(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    countries: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """`normalise_many` for plates packed as one byte buffer with starts and lengths.

    This is the shape of an Arrow string column and of the wire's packed plate column; all the
    work is on 1-D arrays (no per-row matrix until the compact result), so it is the fast path.
    """
    n = len(starts)
    mapped = _LUT[data]
    bad = mapped == _BAD
    keep = (mapped != _DROP) & ~bad
    letter = keep & (mapped >= ord("A")) & (mapped <= ord("Z"))
    bad_char = _segment_sum(bad, starts, lengths) > 0
    length = _segment_sum(keep, starts, lengths)
    has_letter = _segment_sum(letter, starts, lengths) > 0
    compact = mapped[keep]
    new_start = np.cumsum(length) - length
    out = np.zeros((n, PLATE_WIDTH), dtype=np.uint8)
    if len(compact):
        last = len(compact) - 1
        for col in range(PLATE_WIDTH):
            out[:, col] = np.where(length > col, compact[np.minimum(new_start + col, last)], 0)
    rule = _rules(length, has_letter, bad_char, countries)
    out[rule != PlateRule.OK] = 0
    return out, rule


def _rules(
    length: npt.NDArray[np.int64],
    has_letter: npt.NDArray[np.bool_],
    bad_char: npt.NDArray[np.bool_],
    countries: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """The first rule each row breaks, in the order `try_normalise` applies them."""
    cty_ok = ((countries >= ord("A")) & (countries <= ord("Z"))).all(axis=1)
    belgian = (countries[:, 0] == ord("B")) & (countries[:, 1] == ord("E"))
    rule = np.zeros(len(length), dtype=np.uint8)
    too_long = np.where(belgian, length > BELGIAN_MAX_LEN, length > FOREIGN_MAX_LEN)
    rule[belgian & ~has_letter] = PlateRule.NO_LETTER
    rule[belgian & (length < BELGIAN_MIN_LEN)] = PlateRule.TOO_SHORT
    rule[too_long] = PlateRule.TOO_LONG
    rule[length == 0] = PlateRule.EMPTY
    rule[bad_char] = PlateRule.BAD_CHARACTER
    rule[~cty_ok] = PlateRule.BAD_COUNTRY
    return rule


def flatten(
    values: list[str] | list[bytes],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pack strings into (data, starts, lengths) for `normalise_flat` (UTF-8 for str)."""
    encoded = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
    lengths = np.array([len(v) for v in encoded], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
    return data, starts, lengths


def matrix_to_strings(matrix: npt.NDArray[np.uint8]) -> list[str]:
    """Normalised plate matrix back to str (for tests and one-item paths)."""
    width = matrix.shape[1]
    flat = np.ascontiguousarray(matrix).view(f"S{width}").ravel()
    return [b.decode("ascii") for b in flat.tolist()]
