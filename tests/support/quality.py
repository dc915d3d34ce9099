"""A direct count of a store's data quality, one version at a time (the reference for
`lez.data_quality`, which counts whole arrays)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from lez import codes
from lez.decision import Derived
from lez.enrich import enrich_one
from lez.store import open_store
from lez.vehicle import U16_UNKNOWN, Flag

CODE_COLUMNS = {
    "category": codes.CATEGORY,
    "kind": codes.KIND,
    "bodywork": codes.BODYWORK,
    "fuel": codes.FUEL,
    "euro": codes.EURO,
    "status": codes.STATUS,
}


def store_versions_counted(store: Path) -> dict[str, Any]:
    """records, missing_* and derived over every version the published store holds."""
    reader = open_store(store)
    try:
        records = reader.merged_vehicles().records.copy()
    finally:
        reader.close()
    derived: Counter[str] = Counter(category=0, euro=0, plug_in_hybrid=0)
    missing: Counter[str] = Counter()
    for record in records:
        for name in ("category", "euro", "fuel"):
            missing[name] += int(record[name]) == codes.UNKNOWN
        flags = enrich_one(record).derived
        derived["category"] += bool(flags & Derived.CATEGORY)
        derived["euro"] += bool(flags & Derived.EURO)
        derived["plug_in_hybrid"] += bool(
            codes.FUEL_HYBRID[int(record["fuel"])]
            and int(record["flags"]) & Flag.ELECTRIC_MOTOR
            and int(record["co2"]) != U16_UNKNOWN
        )
    return {
        "records": len(records),
        "missing_category": missing["category"],
        "missing_euro": missing["euro"],
        "missing_fuel": missing["fuel"],
        "derived": dict(derived),
    }


def extract_unknown_codes(extract: Path) -> dict[str, int]:
    """Non-blank codes not in the code lists, per column, over the rows with every column."""
    out = dict.fromkeys(CODE_COLUMNS, 0)
    with extract.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        for fields in reader:
            if len(fields) != len(header):
                continue
            for column, code_list in CODE_COLUMNS.items():
                value = fields[header.index(column)].strip()
                out[column] += bool(value) and not code_list.is_known(value)
    return out


def feed_unknown_codes(days_dir: Path) -> dict[str, int]:
    """Non-blank codes not in the code lists, per column, in the details of a stand-in feed."""
    out = dict.fromkeys(CODE_COLUMNS, 0)
    for day_file in sorted(days_dir.glob("*.jsonl")):
        for line in day_file.read_text().splitlines():
            details = json.loads(line).get("details")
            if not isinstance(details, dict):
                continue
            for column, code_list in CODE_COLUMNS.items():
                value = details.get(column)
                out[column] += (
                    isinstance(value, str)
                    and bool(value.strip())
                    and not (code_list.is_known(value))
                )
    return out
