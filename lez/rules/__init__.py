"""Versioned rule tables: load, validate, compile, evaluate.

- `schema`: the TOML format of `rules/<revision>.toml` and its validation (file:line:field).
- `compile`: per-zone lookup arrays, the one form both engine paths read.
- `catalog`: several revisions at once; pin one or take the newest.
- `engine`: `evaluate` (vectorised over a chunk, `DecisionColumns`) and `decide_one` (single
  checks: the compiled tables, one item at a time, a `Verdict`).

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
from lez.rules.engine import Verdict, decide_one, evaluate

__all__ = [
    "Revision",
    "RuleCatalog",
    "Verdict",
    "Zone",
    "decide_one",
    "evaluate",
    "load_catalog",
    "load_catalog_dir",
    "read_rule_texts",
]
