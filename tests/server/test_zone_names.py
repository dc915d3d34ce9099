"""Zones by their common names: every alias of `lez.rules.catalog.ZONE_ALIASES` resolves to its
zone through the server's `resolve_zone` (in any case, with or without accents), and an unknown
name's error lists the names accepted without echoing a value that could be a plate."""

from __future__ import annotations

from pathlib import Path

import pytest

from lez.errors import UnknownZone
from lez.rules import load_catalog_dir
from lez.rules.catalog import ZONE_ALIASES, RuleCatalog
from server.service import resolve_zone

RULES = Path(__file__).resolve().parents[2] / "rules"
COMMON_NAMES = [
    ("Antwerp", "Antwerpen"),
    ("anvers", "Antwerpen"),
    ("ANTWERPEN", "Antwerpen"),
    ("Ghent", "Gent"),
    ("Gand", "Gent"),
    ("Brussel", "Brussels"),
    ("Bruxelles", "Brussels"),
    ("brussels-capital", "Brussels"),
    ("Brussels Capital", "Brussels"),
    ("Region de Bruxelles Capitale", "Brussels"),
    ("  Brüssel ", "Brussels"),
    ("Brussel-Hoofdstad", "Brussels"),
]


@pytest.fixture(scope="module")
def catalog() -> RuleCatalog:
    return load_catalog_dir(RULES)


@pytest.mark.parametrize(("text", "zone"), COMMON_NAMES)
def test_a_common_name_resolves_to_its_zone(catalog: RuleCatalog, text: str, zone: str) -> None:
    assert resolve_zone(catalog, text).name == zone
    for revision in catalog.revisions:  # pinned revisions resolve them too
        assert resolve_zone(catalog.get(revision), text).name == zone


def test_every_alias_resolves_and_names_an_official_zone(catalog: RuleCatalog) -> None:
    names = {z.name for z in catalog.zones}
    assert set(ZONE_ALIASES) <= names
    for official, aliases in ZONE_ALIASES.items():
        for alias in aliases:
            assert resolve_zone(catalog, alias).name == official, alias
    assert resolve_zone(catalog, "2").name == "Gent"  # ids still work


def test_an_unknown_zone_lists_the_accepted_names(catalog: RuleCatalog) -> None:
    with pytest.raises(UnknownZone) as unknown:
        resolve_zone(catalog, "Atlantis")
    message = str(unknown.value)
    assert "'Atlantis'" in message
    for official, aliases in ZONE_ALIASES.items():
        assert official in message and all(alias in message for alias in aliases)
    with pytest.raises(UnknownZone) as plate:
        resolve_zone(catalog, "1ABC234")
    assert "1ABC234" not in str(plate.value) and "Antwerp" in str(plate.value)
