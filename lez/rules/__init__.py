"""Versioned rule tables: load, validate, compile, evaluate.

- `schema`: the TOML format of `rules/<revision>.toml` and its validation (file:line:field).
- `compile`: per-zone lookup arrays, and the criteria straight from the rows (reference path).
- `catalog`: several revisions at once; pin one or take the newest.
- `engine`: `evaluate` (vectorised over a chunk), `evaluate_one` (reference path) and
  `decide_one` (single checks: the compiled tables, one item at a time).

Enrichment (missing category, euro norm, plug-in hybrid) is `lez.enrich`; its data tables live
in `lez/rules/data/`.
"""

from lez.rules.catalog import (
    Revision,
    RuleCatalog,
    Zone,
    load_catalog,
    load_catalog_dir,
    read_rule_texts,
)
from lez.rules.engine import Decision, decide_one, evaluate, evaluate_one

__all__ = [
    "Decision",
    "Revision",
    "RuleCatalog",
    "Zone",
    "decide_one",
    "evaluate",
    "evaluate_one",
    "load_catalog",
    "load_catalog_dir",
    "read_rule_texts",
]
