"""Plate normalisation: formats, rules, and the scalar/vectorised agreement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez import plates
from lez.errors import InvalidPlate
from lez.plates import PlateRule, PlateSeries

ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# Text a camera, a citizen or a register may send: plate characters, separators and noise.
raw_text = st.text(
    alphabet=st.sampled_from(list("ABCXYZabcxyz0189 -.\t\x00#/é_O")), min_size=0, max_size=14
)
country = st.sampled_from(["BE", "be", "NL", "FR", "DE", "B", "B1", "", "XX"])


@pytest.mark.parametrize(
    ("raw", "expected", "series"),
    [
        ("1-ABC-234", "1ABC234", PlateSeries.CURRENT),
        ("2 abc 234", "2ABC234", PlateSeries.CURRENT),
        ("1.abc.234", "1ABC234", PlateSeries.CURRENT),
        ("9-123-ABC", "9123ABC", PlateSeries.CURRENT_DIGITS_FIRST),
        ("G-ABC-123", "GABC123", PlateSeries.LETTER_PREFIX),
        ("M-ABC-123", "MABC123", PlateSeries.LETTER_PREFIX),
        ("WX-16-ABC", "WX16ABC", PlateSeries.TWO_LETTER),
        ("ABC-123", "ABC123", PlateSeries.OLD_1973),
        ("123-ABC", "123ABC", PlateSeries.OLD_2008),
        ("CD-1234", "CD1234", PlateSeries.DIPLOMATIC),
        ("JAN-2", "JAN2", PlateSeries.PERSONALISED),
        ("ELEKTRO8", "ELEKTRO8", PlateSeries.PERSONALISED),
    ],
)
def test_belgian_formats(raw: str, expected: str, series: PlateSeries) -> None:
    got = plates.normalise(raw)
    assert got.plate == expected
    assert got.country == "BE"
    assert plates.series(got.plate) is series


@pytest.mark.parametrize(
    ("raw", "country", "rule"),
    [
        ("", "BE", PlateRule.EMPTY),
        (" - . ", "BE", PlateRule.EMPTY),
        ("1-ABC-23#", "BE", PlateRule.BAD_CHARACTER),
        ("1-ÄBC-234", "BE", PlateRule.BAD_CHARACTER),
        ("ABCDEFGHI", "BE", PlateRule.TOO_LONG),
        ("A", "BE", PlateRule.TOO_SHORT),
        ("1234567", "BE", PlateRule.NO_LETTER),
        ("12345678901", "NL", PlateRule.TOO_LONG),
        ("1-ABC-234", "BEL", PlateRule.BAD_COUNTRY),
    ],
)
def test_rules_broken(raw: str, country: str, rule: PlateRule) -> None:
    assert plates.try_normalise(raw, country) == ("", rule)
    with pytest.raises(InvalidPlate) as info:
        plates.normalise(raw, country)
    assert info.value.rule == rule.name


def test_error_never_echoes_the_plate() -> None:
    with pytest.raises(InvalidPlate) as info:
        plates.normalise("SECRET#9")
    assert "SECRET" not in str(info.value)


def test_repr_never_shows_the_plate() -> None:
    got = plates.normalise("1-SEC-999")
    assert got.plate == "1SEC999"
    assert "SEC" not in repr(got) and "SEC" not in str(got)


def test_foreign_plate_keeps_its_country() -> None:
    got = plates.normalise("12-abc-3", "nl")
    assert (got.country, got.plate, got.is_belgian) == ("NL", "12ABC3", False)


@given(raw_text, country)
def test_normalise_is_idempotent_and_stays_in_alphabet(raw: str, cty: str) -> None:
    text, rule = plates.try_normalise(raw, cty)
    if rule is PlateRule.OK:
        assert set(text) <= ALPHABET
        assert plates.try_normalise(text, cty) == (text, PlateRule.OK)
    else:
        assert text == ""


@settings(max_examples=200)
@given(st.lists(st.tuples(raw_text, country), min_size=1, max_size=40))
def test_scalar_and_vectorised_agree(items: list[tuple[str, str]]) -> None:
    raws = [r for r, _ in items]
    ctys = [c for _, c in items]
    matrix = plates.as_matrix(raws, width=32)
    cmat = plates.countries_matrix(np.array(ctys, dtype="U3"), len(items))
    # countries longer than two characters are invalid in both forms
    too_long = np.array([len(c.encode()) > 2 for c in ctys])
    normalised, rules = plates.normalise_many(matrix, cmat)
    rules = np.where(too_long, PlateRule.BAD_COUNTRY, rules)
    texts = plates.matrix_to_strings(normalised)
    for i, (raw, cty) in enumerate(items):
        expected_text, expected_rule = plates.try_normalise(raw, cty)
        assert int(rules[i]) == expected_rule, (i, expected_rule)
        if expected_rule is PlateRule.OK:
            assert texts[i] == expected_text


@settings(max_examples=200)
@given(st.lists(st.tuples(raw_text, country), min_size=0, max_size=40))
def test_scalar_and_flat_agree(items: list[tuple[str, str]]) -> None:
    """The flat form over plates of different lengths (the Arrow and wire shape)."""
    raws = [r for r, _ in items]
    ctys = [c for _, c in items]
    data, starts, lengths = plates.flatten(raws)
    cmat = plates.countries_matrix(np.array(ctys, dtype="U3"), len(items))
    too_long = np.array([len(c.encode()) > 2 for c in ctys], dtype=np.bool_)
    normalised, rules = plates.normalise_flat(data, starts, lengths, cmat)
    rules = np.where(too_long, PlateRule.BAD_COUNTRY, rules)
    assert normalised.shape == (len(items), plates.PLATE_WIDTH)
    texts = plates.matrix_to_strings(normalised)
    for i, (raw, cty) in enumerate(items):
        expected_text, expected_rule = plates.try_normalise(raw, cty)
        assert int(rules[i]) == expected_rule, (i, expected_rule)
        assert texts[i] == expected_text
