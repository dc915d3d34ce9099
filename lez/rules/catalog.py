"""Rule revisions loaded together: the catalog the loader compiles and the server evaluates with.

Revision ids are the file stems of `rules/*.toml` (ISO dates, so they sort oldest to newest).
`RuleCatalog.get(None)` is the newest revision; a caller may pin any loaded one. Each revision
is validated and compiled for every zone when loaded, so a bad file is refused before a store is
written and evaluation never compiles.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lez.errors import RuleTableError, UnknownRuleset, UnknownZone, echo
from lez.registrations import Region
from lez.rules.compile import CompiledZone, compile_zone
from lez.rules.schema import RevisionData, ZoneDef, parse_revision

RULE_SUFFIX: Final = ".toml"
ZONE_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "Antwerpen": ("Antwerp", "Anvers"),
    "Gent": ("Ghent", "Gand"),
    "Brussels": (
        "Brussel",
        "Bruxelles",
        "Brüssel",
        "Brussels-Capital",
        "Brussels-Capital Region",
        "Bruxelles-Capitale",
        "Région de Bruxelles-Capitale",
        "Brussel-Hoofdstad",
        "Brussels Hoofdstedelijk Gewest",
    ),
}
"""The common names of the zones (English, French, Dutch, German), by the official name of
the rule files: the one place they are listed. `Revision.zone` resolves them for every caller
(the server's `resolve_zone`), compared by `fold_zone_name`."""


NAMED_ZONE_TEXTS: Final = 256
"""How many distinct zone texts a revision remembers resolved (`Revision.zone_def`)."""


def fold_zone_name(text: str) -> str:
    """A zone name as names are compared: case and accents folded, '-' and '_' as spaces,
    spaces collapsed ('Région de Bruxelles-Capitale' -> 'region de bruxelles capitale')."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(plain.casefold().replace("-", " ").replace("_", " ").split())


@dataclass(frozen=True, slots=True)
class Zone:
    """A low-emission zone as a caller sees it."""

    id: int
    name: str
    region: Region
    nis: int
    start_day: int  # first day the zone is in force
    source: str


def _zone(z: ZoneDef) -> Zone:
    return Zone(
        id=z.id, name=z.name, region=z.region, nis=z.nis, start_day=z.start, source=z.source
    )


def _accepted_names(zone: ZoneDef) -> str:
    """'2 Gent (also Ghent, Gand)': a zone's id, name and common names, for an error."""
    aliases = ZONE_ALIASES.get(zone.name, ())
    return f"{zone.id} {zone.name}" + (f" (also {', '.join(aliases)})" if aliases else "")


class Revision:
    """One validated revision with its compiled zones."""

    def __init__(self, data: RevisionData) -> None:
        self.data = data
        self.id = data.id
        self.title = data.title
        self.zones = [_zone(z) for z in data.zones]
        self._compiled = {z.id: compile_zone(data, z) for z in data.zones}
        self._defs = {z.id: z for z in data.zones}
        # what callers may name a zone by: its id as text, its common names, its name (folded:
        # any case, with or without accents; names win over ids, official over common names)
        self._by_text = (
            {str(z.id): z for z in data.zones}
            | {fold_zone_name(a): z for z in data.zones for a in ZONE_ALIASES.get(z.name, ())}
            | {fold_zone_name(z.name): z for z in data.zones}
        )
        self._zones = {z.id: z for z in self.zones}
        # texts callers used, as given (a single check names its zone on every call, and
        # folding a name costs more than the rest of resolving it); bounded, as the texts
        # come from callers: once full, further texts are folded every time
        self._named: dict[str, ZoneDef] = {}

    def zone(self, name_or_id: str | int) -> Zone:
        """A zone by id or (case-insensitive) name; UnknownZone if this revision has none."""
        return self._zones[self.zone_def(name_or_id).id]

    def zone_def(self, name_or_id: str | int) -> ZoneDef:
        if isinstance(name_or_id, int):
            found = self._defs.get(name_or_id)
        else:
            found = self._named.get(name_or_id)
            if found is None:
                text = name_or_id.strip()
                found = self._by_text.get(fold_zone_name(text))
                if found is None and text.isdigit():  # "07" is zone 7
                    found = self._defs.get(int(text))
                if found is not None and len(self._named) < NAMED_ZONE_TEXTS:
                    self._named[name_or_id] = found
        if found is None:
            raise UnknownZone(
                f"unknown zone {echo(str(name_or_id))} in revision {self.id}; accepted: "
                + "; ".join(_accepted_names(z) for z in self.data.zones)
            )
        return found

    def compiled(self, zone_id: int) -> CompiledZone:
        got = self._compiled.get(zone_id)
        if got is None:
            self.zone_def(zone_id)  # raises UnknownZone
        assert got is not None
        return got

    def __repr__(self) -> str:
        return f"Revision({self.id!r}, zones={[z.name for z in self.zones]})"


class RuleCatalog:
    """Every loaded revision, ordered oldest to newest."""

    def __init__(self, revisions: list[Revision]) -> None:
        if not revisions:
            raise RuleTableError("rules", None, "revision", "no rule revision to load")
        self._by_id = {r.id: r for r in sorted(revisions, key=lambda r: r.id)}
        self.revisions: tuple[str, ...] = tuple(self._by_id)
        self.newest: str = self.revisions[-1]

    def get(self, revision_id: str | None = None) -> Revision:
        """A pinned revision, or the newest for None; UnknownRuleset if not loaded."""
        if revision_id is None or revision_id == "":
            return self._by_id[self.newest]
        got = self._by_id.get(revision_id)
        if got is None:
            raise UnknownRuleset(
                f"rule revision {echo(revision_id)} is not loaded; "
                f"loaded: {', '.join(self.revisions)}"
            )
        return got

    @property
    def zones(self) -> list[Zone]:
        """The zones of the newest revision."""
        return list(self.get().zones)

    def zone(self, name_or_id: str | int) -> Zone:
        """A zone of the newest revision by id or name; UnknownZone otherwise."""
        return self.get().zone(name_or_id)


def load_catalog(texts: Mapping[str, str]) -> RuleCatalog:
    """Validate and compile revisions given as {revision id: file text}."""
    return RuleCatalog(
        [Revision(parse_revision(text, f"{rid}{RULE_SUFFIX}", rid)) for rid, text in texts.items()]
    )


def read_rule_texts(path: Path) -> dict[str, str]:
    """{revision id: text} of every `*.toml` in a directory (what the loader stores)."""
    files = sorted(path.glob(f"*{RULE_SUFFIX}"))
    if not files:
        raise RuleTableError(str(path), None, "revision", f"no *{RULE_SUFFIX} rule files here")
    return {f.stem: f.read_text(encoding="utf-8") for f in files}


def load_catalog_dir(path: Path) -> RuleCatalog:
    """Validate and compile every revision file of a directory; errors name the real file."""
    files = sorted(path.glob(f"*{RULE_SUFFIX}"))
    if not files:
        raise RuleTableError(str(path), None, "revision", f"no *{RULE_SUFFIX} rule files here")
    return RuleCatalog(
        [Revision(parse_revision(f.read_text(encoding="utf-8"), str(f), f.stem)) for f in files]
    )
