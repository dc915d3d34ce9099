"""The CSV file of earlier decisions that `lez recheck --file` reads (appeals).

A header, then one row per earlier decision: `plate`, `country` (empty = BE), `zone`, `date`
(`YYYY-MM-DD`), `outcome`, and optionally `reason`, `euro`, `snapshot_id`,
`ruleset_revision`. A file that cannot be used is a `BatchFileError` naming the file, and the
line and what is wrong for a bad row; no plate is ever quoted.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Final

from clients.batchfile import BatchFileError
from clients.cli_parser import outcome_arg, reason_arg
from clients.decisions import RecheckItem
from clients.errors import file_problem
from lez.plates import BELGIUM

RECHECK_COLUMNS: Final = ("plate", "country", "zone", "date", "outcome")
FIRST_ROW_LINE: Final = 2
"""The file line of the first row (after the header), for error messages."""


def read_recheck_file(path: Path) -> list[RecheckItem]:
    """The earlier decisions of a file; BatchFileError saying what to change."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise BatchFileError(file_problem(path, exc)) from None
    if not rows:
        raise BatchFileError(f"{path}: no rows after the header")
    lacking = [c for c in RECHECK_COLUMNS if c not in rows[0]]
    if lacking:
        raise BatchFileError(f"{path}: missing column(s) {', '.join(lacking)}")
    return [_item(path, line, row) for line, row in enumerate(rows, start=FIRST_ROW_LINE)]


def _item(path: Path, line: int, row: dict[str, str]) -> RecheckItem:
    try:
        outcome = outcome_arg(row["outcome"])
        reason = reason_arg(row["reason"]) if row.get("reason") else None
    except argparse.ArgumentTypeError as exc:
        raise BatchFileError(f"{path} line {line}: {exc}") from None
    return RecheckItem(
        plate=row["plate"],
        country=(row.get("country") or BELGIUM).strip().upper(),
        zone=row["zone"],
        date=row["date"],
        outcome=outcome,
        reason=reason,
        euro=row.get("euro") or None,
        snapshot_id=row.get("snapshot_id") or "",
        revision=row.get("ruleset_revision") or "",
    )
