"""Pseudonymisation: deterministic, fixed length, key-dependent, batch == reference."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lez import keys, plates
from lez.errors import KeyFileError

plate_text = st.text(alphabet="ABCDEFGHJKLMNPRSTUVWXYZ0123456789", min_size=2, max_size=8)
secret = st.binary(min_size=16, max_size=80)


@given(secret, plate_text)
def test_key_is_deterministic_and_fixed_length(sec: bytes, plate: str) -> None:
    keyer = keys.PlateKeyer.from_secret(sec)
    a = keyer.key("BE", plate)
    assert a == keys.PlateKeyer.from_secret(sec).key("BE", plate)
    assert len(a) == keys.KEY_BYTES
    assert a == hmac.new(sec, ("BE" + plate).encode(), hashlib.sha256).digest()[:16]


@given(secret, secret, plate_text)
def test_key_depends_on_the_secret(s1: bytes, s2: bytes, plate: str) -> None:
    if s1 == s2:
        return
    assert keys.PlateKeyer.from_secret(s1).key("BE", plate) != keys.PlateKeyer.from_secret(s2).key(
        "BE", plate
    )


@given(secret, st.lists(st.tuples(st.sampled_from(["BE", "NL", "FR"]), plate_text), max_size=30))
def test_batch_keys_equal_reference(sec: bytes, items: list[tuple[str, str]]) -> None:
    keyer = keys.PlateKeyer.from_secret(sec)
    n = len(items)
    pm = plates.as_matrix([p for _, p in items] or [""], width=plates.PLATE_WIDTH)[:n]
    cm = plates.countries_matrix(np.array([c for c, _ in items] or ["BE"]), max(n, 1))[:n]
    got = keyer.key_matrix(cm, pm)
    python = keyer.key_matrix(cm, pm, native=False)
    assert got.shape == (n, keys.KEY_BYTES)
    assert got.tobytes() == python.tobytes()
    for i, (c, p) in enumerate(items):
        assert got[i].tobytes() == keyer.key(c, p)


def test_native_keying_is_built() -> None:
    # The extension is optional for installs, but this project's machines build it.
    assert keys.NATIVE, "lez._hmac was not built: install gcc and libssl-dev, then make install"


def test_country_qualifies_the_key() -> None:
    keyer = keys.PlateKeyer.from_secret(b"k" * 32)
    assert keyer.key("BE", "AB123") != keyer.key("NL", "AB123")


def test_key_file_roundtrip_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "k" / "hmac.key"
    key_id = keys.generate_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keyer = keys.load_key(path)
    assert keyer.key_id == key_id
    secret_hex = path.read_text().split()[1]
    assert secret_hex not in repr(keyer)
    assert secret_hex not in key_id
    with pytest.raises(KeyFileError, match="exists"):
        keys.generate_key_file(path)


def test_bad_key_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="keygen"):
        keys.load_key(tmp_path / "missing.key")
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a lez key file"):
        keys.load_key(bad)


plate_bytes = st.binary(max_size=14) | st.text(
    alphabet=st.sampled_from(list("ABCXYZabcxyz0189 -.\t\x00#é")), max_size=14
).map(lambda t: t.encode("utf-8"))


@given(
    secret,
    st.lists(st.tuples(plate_bytes, st.sampled_from(["BE", "NL", "FR", "B1", "??"])), max_size=40),
)
def test_native_normalise_and_key_equals_python(sec: bytes, items: list[tuple[bytes, str]]) -> None:
    keyer = keys.PlateKeyer.from_secret(sec)
    data, starts, lengths = plates.flatten([p for p, _ in items])
    cty = plates.countries_matrix(np.array([c for _, c in items] or ["BE"]), max(len(items), 1))
    cty = cty[: len(items)]
    native = keyer.normalise_and_key(data, starts, lengths, cty, native=True)
    python = keyer.normalise_and_key(data, starts, lengths, cty, native=False)
    for a, b in zip(native, python, strict=True):
        assert a.tobytes() == b.tobytes()
    for i, (raw, country) in enumerate(items):  # and both agree with the scalar definition
        text, rule = plates.try_normalise(raw.decode("utf-8", "replace"), country)
        if b"\xef\xbf\xbd" not in raw and raw.decode("utf-8", "replace").encode() == raw:
            assert int(native[1][i]) == rule
            if rule is plates.PlateRule.OK:
                assert native[2][i].tobytes() == keyer.key(country, text)


@given(
    secret,
    st.lists(st.binary(min_size=0, max_size=80).map(lambda b: b.replace(b"\0", b"x")), max_size=9),
)
def test_native_sha_instructions_path_equals_openssl_path(
    sec: bytes, messages: list[bytes]
) -> None:
    """The native core hashes short messages with the CPU's SHA instructions, several at a time,
    where the CPU has them; OpenSSL otherwise. Both give HMAC-SHA256 exactly, for any message
    length (one block or more) and any count (whole groups of lanes or not)."""
    from lez import _hmac

    width = 81
    blob = b"".join(m.ljust(width, b"\0") for m in messages)
    reference = b"".join(hmac.digest(sec, m, "sha256")[: keys.KEY_BYTES] for m in messages)
    try:
        _hmac.accelerate(False)
        through_openssl = _hmac.keys(sec, blob, width)
        direct = _hmac.accelerate(True)
        through_sha_instructions = _hmac.keys(sec, blob, width)
    finally:
        _hmac.accelerate(True)
    assert through_openssl == reference
    assert through_sha_instructions == reference
    if not direct:  # a CPU without the SHA extensions: both calls went through OpenSSL
        pytest.skip("this CPU has no SHA extensions: the direct path cannot run here")


@given(
    secret,
    st.text(alphabet=st.sampled_from(list("ABCXYZabcxyz0189 -.\t\x00#é\u00a0\ud800")), max_size=14),
    st.sampled_from(["BE", "be", "Nl", "FR", "B1", "??", "BEL", "", "É1"]),
)
def test_one_plate_native_equals_python_and_the_scalar_definition(
    sec: bytes, raw: str, country: str
) -> None:
    """The single check's keying (the batch core on a batch of one) gives the rule and key of
    the Python path, which are `try_normalise` and `key` by definition."""
    keyer = keys.PlateKeyer.from_secret(sec)
    native = keyer.normalise_and_key_one(raw, country, native=True)
    python = keyer.normalise_and_key_one(raw, country, native=False)
    assert native == python
    if not plates.is_country_code(country):
        assert python == (plates.PlateRule.BAD_COUNTRY, bytes(keys.KEY_BYTES))
        return
    text, rule = plates.try_normalise(raw, country)
    assert python[0] is rule
    assert python[1] == (
        keyer.key(country.upper(), text) if rule is plates.PlateRule.OK else bytes(16)
    )
