"""What `lez campaign` writes and prints: the CSV of the vehicles that will lose access (keys,
never plates), the chart of how many lose access at each step by fuel, and the summary.

The chart needs matplotlib, an optional extra of the client (`pip install lez-access[plot]`):
it is imported only when a chart is asked for, and its absence is one readable error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from clients.batchfile import BatchFileError
from clients.campaign import CampaignResult, LosingRows
from clients.enum_names import REASON_NAMES
from lez.api.v1 import access_pb2 as pb
from lez.days import from_day

CSV_COLUMNS: Final = ("key", "reason", "first_day_lost", "category", "fuel", "euro")
"""The columns of the campaign CSV, in order."""
HEX_DIGITS: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
AUDIT_ID_SHOWN: Final = 16


class PlotUnavailable(Exception):
    """A chart was asked for and matplotlib is not installed."""


CodeLists = Mapping[str, Mapping[int, tuple[str, str]]]
"""Code list name ("category", "fuel", "euro") -> id -> (DIV code, label)."""


def code_lists(info: pb.ServerInfoResponse) -> CodeLists:
    """The server's code lists, for the ids in the answer's columns."""
    return {
        lst.name: {int(e.id): (e.code, e.label) for e in lst.entries} for lst in info.code_lists
    }


def _codes(ids: npt.NDArray[np.uint8], codes: Mapping[int, tuple[str, str]]) -> pa.Array:
    lut = np.array([codes.get(i, ("", ""))[0] for i in range(256)], dtype=object)
    return pa.array(lut[ids], pa.string())


def key_hex(keys: npt.NDArray[np.uint8]) -> pa.Array:
    """Each 16-byte key as 32 lower-case hex digits (vectorised: no Python loop per key)."""
    digits = np.empty((len(keys), 2 * keys.shape[1]), dtype=np.uint8)
    digits[:, 0::2] = HEX_DIGITS[keys >> 4]
    digits[:, 1::2] = HEX_DIGITS[keys & 15]
    return pa.array(digits.view(f"S{digits.shape[1]}").ravel().astype(str), pa.string())


def write_campaign(path: Path, rows: LosingRows, lists: CodeLists) -> None:
    """The vehicles as CSV: key (hex), reason, first day lost, category, fuel, euro norm."""
    days = pa.array(rows.first_day_lost, pa.int32()).cast(pa.date32()).cast(pa.string())
    reasons = np.array(REASON_NAMES, dtype=object)
    table = pa.table(
        {
            "key": key_hex(rows.keys),
            "reason": pa.array(reasons[rows.reason], pa.string()),
            "first_day_lost": days,
            "category": _codes(rows.category, lists.get("category", {})),
            "fuel": _codes(rows.fuel, lists.get("fuel", {})),
            "euro": _codes(rows.euro, lists.get("euro", {})),
        }
    )
    try:
        with open(path, "wb") as out:
            pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="needed"))
    except OSError as exc:
        raise BatchFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def losses_by_step(
    rows: LosingRows, fuels: Mapping[int, tuple[str, str]]
) -> tuple[list[dt.date], dict[str, list[int]]]:
    """(the days vehicles lose access on, in order; fuel label -> vehicles on each day)."""
    days = sorted({int(d) for d in np.unique(rows.first_day_lost)})
    by_fuel: dict[str, list[int]] = {}
    for fuel in np.unique(rows.fuel).tolist():
        code, label = fuels.get(int(fuel), ("", ""))
        name = f"{label} ({code})" if code else "unknown fuel"
        mine = rows.first_day_lost[rows.fuel == fuel]
        by_fuel[name] = [int((mine == d).sum()) for d in days]
    return [from_day(d) for d in days], by_fuel


def plot_campaign(path: Path, rows: LosingRows, lists: CodeLists, title: str) -> None:
    """A stacked bar chart: vehicles losing access on each day (a step's first day, or the day
    after an exemption ends), by fuel."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'lez-access[plot]' (or leave --plot out)"
        ) from None
    days, by_fuel = losses_by_step(rows, lists.get("fuel", {}))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(days) + 3), 4.5))
    labels = [d.isoformat() for d in days]
    bottom = np.zeros(len(days))
    for name, counts in by_fuel.items():
        ax.bar(labels, counts, bottom=bottom, label=name)
        bottom += np.array(counts)
    ax.set_xlabel("first day without access")
    ax.set_ylabel("vehicles")
    ax.set_title(title)
    if by_fuel:
        ax.legend(title="fuel", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise BatchFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def campaign_lines(result: CampaignResult, zone: str, date: dt.date, output: Path) -> list[str]:
    """The summary as a person reads it: how many, the cells, what was suppressed, where."""
    s = result.summary
    lines = [
        f"{s.vehicles:,} vehicle(s) will lose access to {zone} by {date.isoformat()} "
        f"(listed in {result.seconds:.2f} s)",
    ]
    if s.cells:
        lines.append(f"  {'category':<10}{'fuel':<6}{'euro':<10}{'vehicles':>10}")
        for cell in sorted(s.cells, key=lambda c: -c.vehicles):
            lines.append(
                f"  {cell.category or '?':<10}{cell.fuel or '?':<6}{cell.euro or '?':<10}"
                f"{cell.vehicles:>10,}"
            )
    if s.suppressed_cells:
        lines.append(
            f"  {s.suppressed_vehicles:,} vehicle(s) in {s.suppressed_cells} cell(s) of fewer "
            f"than {s.min_cell_size} not shown"
        )
    lines.append(
        f"snapshot {s.snapshot_id}, rule revision {s.revision}, key id {s.key_id}; "
        f"audit id {s.audit_id[:AUDIT_ID_SHOWN]}"
    )
    lines.append(f"wrote {output}")
    return lines


def campaign_json(result: CampaignResult, output: Path, plot: Path | None) -> dict[str, Any]:
    """The summary as JSON values."""
    s = result.summary
    return {
        "vehicles": s.vehicles,
        "cells": [
            {"category": c.category, "fuel": c.fuel, "euro": c.euro, "vehicles": c.vehicles}
            for c in s.cells
        ],
        "suppressed_cells": s.suppressed_cells,
        "suppressed_vehicles": s.suppressed_vehicles,
        "min_cell_size": s.min_cell_size,
        "snapshot_id": s.snapshot_id,
        "ruleset_revision": s.revision,
        "key_id": s.key_id,
        "audit_id": s.audit_id,
        "seconds": round(result.seconds, 4),
        "output": str(output),
        "plot": str(plot) if plot is not None else None,
    }
