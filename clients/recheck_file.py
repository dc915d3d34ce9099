"""The CSV file of earlier decisions that `lez recheck --file` reads (appeals).

A header, then one row per earlier decision: `plate`, `country` (empty = BE), `zone`, `date`
(`YYYY-MM-DD`), `outcome`, and optionally `reason`, `euro`, `snapshot_id`,
`ruleset_revision`. The output of `lez batch` is read as it is: its `day` column is the date,
and the zone (which it has no column for), the snapshot id and the rule revision come from
`lez recheck --zone/--snapshot/--ruleset` (`RecheckDefaults`); its other columns
(`timestamp`, `allowed_until`, `notes`) are not needed. A row with an empty date (a batch row
whose day was unreadable) is sent as it is and answered INVALID. A file that cannot be used is
a `BatchFileError` naming the file, and the line and what is wrong for a bad row; no plate is
ever quoted.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from clients.batchfile import BatchFileError
from clients.cli_parser import outcome_arg, reason_arg
from clients.decisions import RecheckItem
from clients.errors import file_problem
from lez.days import parse_day
from lez.plates import BELGIUM

RECHECK_COLUMNS: Final = ("plate", "country", "zone", "date", "outcome")
DATE_COLUMNS: Final = ("date", "day")
"""Where a row's date is: `date` (an appeals file) or `day` (the output of `lez batch`)."""
FIRST_ROW_LINE: Final = 2
"""The file line of the first row (after the header), for error messages."""


@dataclass(frozen=True, slots=True)
class RecheckDefaults:
    """What rows take when the file has no column for it (`lez batch` output has no zone)."""

    zone: str | None = None
    snapshot_id: str = ""
    revision: str = ""


def read_recheck_file(
    path: Path, defaults: RecheckDefaults = RecheckDefaults()
) -> list[RecheckItem]:
    """The earlier decisions of a file; BatchFileError saying what to change."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise BatchFileError(file_problem(path, exc)) from None
    if not rows:
        raise BatchFileError(f"{path}: no rows after the header")
    header = set(rows[0])
    present = header | ({"zone"} if defaults.zone else set())
    if any(c in header for c in DATE_COLUMNS):
        present.add("date")
    lacking = [c for c in RECHECK_COLUMNS if c not in present and c != "country"]
    if lacking:
        hint = " (give --zone ZONE for a file without a zone column)" if "zone" in lacking else ""
        raise BatchFileError(f"{path}: missing column(s) {', '.join(lacking)}{hint}")
    date_column = next(c for c in DATE_COLUMNS if c in header)
    return [
        _item(path, line, row, date_column, defaults)
        for line, row in enumerate(rows, start=FIRST_ROW_LINE)
    ]


def _item(
    path: Path, line: int, row: dict[str, str], date_column: str, defaults: RecheckDefaults
) -> RecheckItem:
    date = (row.get(date_column) or "").strip()
    try:
        outcome = outcome_arg(row["outcome"] or "")
        reason = reason_arg(row["reason"]) if row.get("reason") else None
        if date:
            parse_day(date)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise BatchFileError(f"{path} line {line}: {exc}") from None
    return RecheckItem(
        plate=row["plate"],
        country=(row.get("country") or BELGIUM).strip().upper(),
        zone=row.get("zone") or defaults.zone or "",
        date=date,
        outcome=outcome,
        reason=reason,
        euro=row.get("euro") or None,
        snapshot_id=row.get("snapshot_id") or defaults.snapshot_id,
        revision=row.get("ruleset_revision") or defaults.revision,
    )
