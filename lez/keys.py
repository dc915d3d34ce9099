"""Pseudonymisation: HMAC-SHA256 of the country-qualified normalised plate, truncated to 16 bytes.

The message is the two-letter country followed by the normalised plate (`BE1ABC234`), so one
key serves both the register (Belgian plates) and the cities' registrations (any country), and
a batch item needs exactly one HMAC. The secret lives in a key file (`lez-loader keygen`),
never in the store, a log or an error; the store records only the key id, a fingerprint.

Batch keying uses the precomputed inner/outer SHA-256 states of HMAC and copies them per
message: in C (`lez._hmac`, GIL released) where the extension was built, otherwise in Python
(2.6x faster than `hmac.digest` when measured on this project's machine). The C core hashes
two keys at a time with the CPU's SHA instructions where it has them, and through OpenSSL
otherwise. All are byte-identical to `hmac.digest`; tests check they agree. The native core's
`normalise_keys` is the third copy of plate normalisation (see `lez.plates`), kept because it
normalises and keys a batch in one pass: about 0.10 us per plate (0.14 us through OpenSSL)
against about 1.05 us for `normalise_flat` plus keying in Python (`python -m
bench.single_paths`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NewType

import numpy as np
import numpy.typing as npt

from lez import plates
from lez.errors import KeyFileError

try:
    from lez import _hmac as _native
except ImportError:  # built without a compiler or OpenSSL headers: pure Python fallback
    _native = None  # type: ignore[assignment]

NATIVE: Final = _native is not None
"""Whether batch keying runs in the native extension."""
_FIRST_START: Final = bytes(8)
"""The int64 start of the only plate of a batch of one."""

PlateKey = NewType("PlateKey", bytes)
"""A 16-byte pseudonymised plate key."""

KEY_BYTES: Final = 16
SECRET_BYTES: Final = 32
_BLOCK: Final = 64
_KEY_FILE_HEADER: Final = "lez-hmac-key-v1"


@dataclass(frozen=True, slots=True)
class PlateKeyer:
    """Computes plate keys with one secret. Build with `PlateKeyer.from_secret` or `load_key`."""

    key_id: str
    _inner: object = field(repr=False)
    _outer: object = field(repr=False)
    _secret: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes) -> PlateKeyer:
        if len(secret) < 16:
            raise KeyFileError("the HMAC secret must be at least 16 bytes; run `lez-loader keygen`")
        padded = (
            secret.ljust(_BLOCK, b"\x00")
            if len(secret) <= _BLOCK
            else (hashlib.sha256(secret).digest().ljust(_BLOCK, b"\x00"))
        )
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        return cls(key_id=key_id_of(secret), _inner=inner, _outer=outer, _secret=secret)

    def key(self, country: str, plate: str) -> PlateKey:
        """Key of one normalised plate (reference path, plain `hmac`)."""
        message = (country + plate).encode("ascii")
        return PlateKey(hmac.digest(self._secret, message, "sha256")[:KEY_BYTES])

    def normalise_and_key_one(
        self, raw: str, country: str, *, native: bool = NATIVE
    ) -> tuple[plates.PlateRule, bytes]:
        """One plate as written and its country: the rule it breaks (OK when accepted) and its
        key (16 zero bytes when refused), as `plates.try_normalise` and `key` give them.

        Natively this is the batch core on a batch of one: no arrays, and far less code run
        than the regular expressions and `hmac.digest` (which matters to a single check, whose
        code runs on caches the audit flush has left cold). A property test holds it equal
        to the Python path."""
        if not plates.is_country_code(country):
            return plates.PlateRule.BAD_COUNTRY, bytes(KEY_BYTES)
        cty = country.upper()
        if native and _native is not None:
            data = raw.encode("utf-8", "replace")  # not ASCII: a bad character either way
            _, rule, key = _native.normalise_keys(
                self._secret, data, _FIRST_START, len(data).to_bytes(8, "little"), cty.encode()
            )
            return plates.PlateRule(rule[0]), key
        text, found = plates.try_normalise(raw, cty)
        return found, (self.key(cty, text) if found is plates.PlateRule.OK else bytes(KEY_BYTES))

    def key_messages(self, messages: Iterable[bytes]) -> bytes:
        """Keys of many messages (`country + plate` bytes) as one concatenated bytes blob."""
        inner_copy = self._inner.copy  # type: ignore[attr-defined]
        outer_copy = self._outer.copy  # type: ignore[attr-defined]
        out = bytearray()
        extend = out.extend
        for msg in messages:
            h = inner_copy()
            h.update(msg)
            o = outer_copy()
            o.update(h.digest())
            extend(o.digest()[:KEY_BYTES])
        return bytes(out)

    def key_matrix(
        self,
        countries: npt.NDArray[np.uint8],
        plates: npt.NDArray[np.uint8],
        *,
        native: bool = NATIVE,
    ) -> npt.NDArray[np.uint8]:
        """Keys of normalised plates given as NUL-padded matrices: an (n, 16) uint8 matrix.

        `countries` is (n, 2), `plates` (n, w) as made by `lez.plates.normalise_many`.
        """
        n = plates.shape[0]
        if n == 0:
            return np.zeros((0, KEY_BYTES), dtype=np.uint8)
        both = np.ascontiguousarray(np.concatenate([countries, plates], axis=1), dtype=np.uint8)
        width = both.shape[1]
        if native and _native is not None:
            blob = _native.keys(self._secret, both.data, width)  # message = row up to first NUL
        else:
            messages = both.view(f"S{width}").ravel().tolist()  # `S` strips trailing NULs
            blob = self.key_messages(messages)
        return np.frombuffer(blob, dtype=np.uint8).reshape(n, KEY_BYTES)

    def normalise_and_key(
        self,
        data: npt.NDArray[np.uint8],
        starts: npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int64],
        countries: npt.NDArray[np.uint8],
        *,
        native: bool = NATIVE,
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """Normalised plates, their `PlateRule` and their keys (zero rows where refused), for
        plates packed as in `lez.plates.normalise_flat` with upper-case (n, 2) countries.

        Natively this is one pass per plate; otherwise `normalise_flat` then `key_matrix`.
        Both give the same bytes (a property test checks it).
        """
        n = len(starts)
        cty = np.ascontiguousarray(countries, dtype=np.uint8)
        if native and _native is not None:
            norm_blob, rule_blob, key_blob = _native.normalise_keys(
                self._secret,
                np.ascontiguousarray(data, dtype=np.uint8).data,
                np.ascontiguousarray(starts, dtype=np.int64).data,
                np.ascontiguousarray(lengths, dtype=np.int64).data,
                cty.data,
            )
            return (
                np.frombuffer(norm_blob, dtype=np.uint8).reshape(n, plates.PLATE_WIDTH),
                np.frombuffer(rule_blob, dtype=np.uint8),
                np.frombuffer(key_blob, dtype=np.uint8).reshape(n, KEY_BYTES),
            )
        normalised, rule = plates.normalise_flat(data, starts, lengths, cty)
        out = np.zeros((n, KEY_BYTES), dtype=np.uint8)
        ok = rule == plates.PlateRule.OK
        if ok.any():
            out[ok] = self.key_matrix(cty[ok], normalised[ok], native=native)
        return normalised, rule, out


def key_id_of(secret: bytes) -> str:
    """Fingerprint of a secret: safe to store and log, useless to recover the secret."""
    return hashlib.sha256(b"lez-key-id\x00" + secret).hexdigest()[:16]


def generate_key_file(path: Path) -> str:
    """Write a new random secret to `path` (mode 0600, refuses to overwrite); returns its id."""
    secret = secrets.token_bytes(SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; remove it first or choose another path") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{_KEY_FILE_HEADER}\n{secret.hex()}\n")
    return key_id_of(secret)


def load_key(path: Path) -> PlateKeyer:
    """Read a key file written by `generate_key_file`."""
    try:
        lines = path.read_text().split()
    except OSError as exc:
        raise KeyFileError(
            f"cannot read key file {path}: {exc.strerror}; create one with `lez-loader keygen`"
        ) from None
    if len(lines) != 2 or lines[0] != _KEY_FILE_HEADER:
        raise KeyFileError(f"{path} is not a lez key file (expected header {_KEY_FILE_HEADER})")
    try:
        secret = bytes.fromhex(lines[1])
    except ValueError:
        raise KeyFileError(f"{path}: the secret is not hexadecimal") from None
    return PlateKeyer.from_secret(secret)


def keys_to_u64(
    keys: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Split (n, 16) keys into big-endian high and low uint64 halves (memcmp order)."""
    halves = np.ascontiguousarray(keys, dtype=np.uint8).view(">u8").reshape(-1, 2)
    return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)
