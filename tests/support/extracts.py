"""Write small DIV extracts for tests (docs/extract-format.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

from loader.extract import COLUMNS

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
"""The project's rule tables, which test stores are built with."""

DEFAULTS: dict[str, str] = {
    "plate_type": "N",
    "category": "M1",
    "kind": "AA",
    "bodywork": "01",
    "max_mass": "1800",
    "running_mass": "1300",
    "seats": "5",
    "fuel": "02",
    "euro": "6",
    "co2": "120",
    "power_kw": "85",
    "first_registration": "2016-03-01",
    "last_registration": "2016-03-01",
    "nis": "11002",
    "status": "A",
    "electric": "0",
    "valid_from": "2016-03-01",
    "valid_to": "",
}


def row(plate: str, **fields: str) -> dict[str, str]:
    values = dict(DEFAULTS, plate=plate)
    values.update(fields)
    return values


def write_extract(
    path: Path, rows: Iterable[Mapping[str, str]], raw_lines: Mapping[int, str] | None = None
) -> Path:
    """Write rows as CSV; `raw_lines` inserts literal lines at given data positions (0-based)."""
    lines = [",".join(COLUMNS)]
    extra = dict(raw_lines or {})
    for i, r in enumerate(rows):
        if i in extra:
            lines.append(extra.pop(i))
        lines.append(",".join(r.get(c, "") for c in COLUMNS))
    lines.extend(extra.values())
    path.write_text("\n".join(lines) + "\n")
    return path


def build_test_store(root: Path, key_file: Path, extract: Path, source_date: dt.date | str) -> Path:
    """Build and publish a store from `extract` with the project's rule tables, one worker;
    returns the store root."""
    from loader.build import build_store
    from loader.config import LoaderConfig

    when = source_date if isinstance(source_date, dt.date) else dt.date.fromisoformat(source_date)
    config = LoaderConfig(
        store_root=root,
        key_file=key_file,
        rules_dir=RULES_DIR,
        reports_dir=root / "reports",
        source_date=when,
        workers=1,
    )
    build_store(config, extract)
    return root
