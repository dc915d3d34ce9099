"""Warning-campaign bench: `LosingAccess` for one zone's municipalities, end to end.

Starts `lez-server serve` (2 workers, loopback) on a store, then times `LezClient.losing_access`
for the Brussels zone's 19 municipalities (about 750,000 resident vehicles in the 8,000,000-
plate synthetic register), reference day 2026-10-20, date 2028-01-01 (the Brussels step that
asks diesel Euro 6d): from the call to every key received and joined in the client, after a
warm-up. The target is under 2 s. Also counts the residents examined (FleetStats on
the reference day for the same municipalities) and checks every run lists the same vehicles.

    .venv/bin/python -m bench.campaign_bench --store var/bench/store-8000000-1 \\
        --key var/bench/hmac.key --runs 5

`bench.run` runs it on the main store (`campaign` in results.json).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import cli_help, report
from bench.stream import LezServer

ROOT = Path(__file__).resolve().parents[1]
ZONE: Final = "Brussels"
BRUSSELS_NIS: Final = tuple(range(21001, 21020))
"""The 19 municipalities of the Brussels-Capital Region (Statbel NIS 21001-21019)."""
REFERENCE: Final = dt.date(2026, 10, 20)
DATE: Final = dt.date(2028, 1, 1)
WIDER_NIS: Final = (*BRUSSELS_NIS, 11002, 44021)
"""The same with the residents of Antwerpen and Gent (commuters warned too): over a million."""
TARGET_S: Final = 2.0


def _figure(client: Any, nis: tuple[int, ...], runs: int) -> dict[str, Any]:
    """One campaign timed: seconds, residents examined, vehicles listed."""
    fleet = client.fleet_stats(["nis"], day=REFERENCE, nis=nis)
    residents = sum(c.vehicles for c in fleet.cells) + fleet.suppressed_vehicles
    listed: list[bytes] = []

    def one() -> Any:
        result = client.losing_access(ZONE, DATE, nis, reference_date=REFERENCE, timeout=600.0)
        listed.append(np.sort(result.rows.keys.view("S16").ravel()).tobytes())
        return result

    seconds, result = report.timed(one, runs)
    return {
        "nis_codes": len(nis),
        "seconds": seconds,
        "residents_examined": residents,
        "vehicles_listed": result.summary.vehicles,
        "same_list_every_run": len(set(listed)) == 1,
        "summary_cells": len(result.summary.cells),
        "suppressed_cells": result.summary.suppressed_cells,
    }


def measure(store: Path, key: Path, scratch: Path, runs: int, workers: int = 2) -> dict[str, Any]:
    """The campaign's figures on one store: the zone's municipalities, then wider."""
    from clients import LezClient

    with (
        LezServer(store, key, scratch, workers=workers) as server,
        LezClient([server.address], timeout_s=600.0) as client,
    ):
        zone = _figure(client, BRUSSELS_NIS, runs)
        wider = _figure(client, WIDER_NIS, runs)
    return {
        "what": f"LosingAccess for zone {ZONE}, reference day {REFERENCE}, date {DATE}: every "
        "key received and joined in the client (LezClient.losing_access), lez-server serve "
        f"--workers {workers} on loopback; median of the runs after a warm-up",
        "zone_municipalities": zone | {"nis": "21001-21019 (the 19 of the region)"},
        "with_antwerpen_and_gent": wider | {"nis": "21001-21019, 11002, 44021"},
        "target_s": TARGET_S,
        "within_target": zone["seconds"]["median_s"] < TARGET_S,
    }


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.campaign_bench", __doc__)
    p.add_argument("--store", type=Path, required=True, help="store root (read only)")
    p.add_argument("--key", type=Path, required=True, help="the store's HMAC key file")
    p.add_argument("--scratch", type=Path, default=ROOT / "var" / "bench-campaign",
                   help="where the server's audit log goes")  # fmt: skip
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args(argv)
    fig = measure(a.store, a.key, a.scratch, a.runs)
    fig["command"] = (
        f"python -m bench.campaign_bench --store {a.store} --key {a.key} --runs {a.runs}"
    )
    print(json.dumps(fig, indent=2))
    same = fig["zone_municipalities"]["same_list_every_run"]
    return 0 if same and fig["with_antwerpen_and_gent"]["same_list_every_run"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
