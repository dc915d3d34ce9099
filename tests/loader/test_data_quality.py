"""Data quality in the store meta: the build's figures equal a direct count of the register."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lez import codes, vehicle
from lez.data_quality import DataQuality, count_versions
from lez.keys import PlateKeyer
from lez.store import StoreBuilder, open_store
from loader.build import _count_versions, build_store
from loader.config import LoaderConfig
from loader.registrations_import import import_registrations
from loader.synth import generate as synth
from tests.support.quality import extract_unknown_codes, store_versions_counted

REPO = Path(__file__).resolve().parents[2]


def _build(tmp_path: Path, key_file: Path, extract: Path) -> Path:
    store = tmp_path / "store"
    build_store(
        LoaderConfig(
            store_root=store,
            key_file=key_file,
            reports_dir=tmp_path / "reports",
            rules_dir=REPO / "rules",
            workers=1,
            max_reject_share=0.5,
        ),
        extract,
    )
    return store


def test_build_figures_equal_a_direct_count_of_the_register(tmp_path: Path, key_file: Path) -> None:
    summary = synth(1500, 3, tmp_path / "reg", unknown_code_share=0.03, bad_rows=6)
    extract = tmp_path / "reg" / "extract.csv"
    store = _build(tmp_path, key_file, extract)
    reader = open_store(store)
    try:
        got = reader.meta.data_quality
        rejects_file = next((tmp_path / "reports").glob("rejects-*.csv"))
    finally:
        reader.close()
    assert got is not None
    expected = store_versions_counted(store)
    assert {k: got[k] for k in expected} == expected
    assert got["unknown_codes"] == extract_unknown_codes(extract)
    assert sum(got["unknown_codes"].values()) > 0  # the synth planted some
    assert got["rejected"] == len(rejects_file.read_text().splitlines()) - 1
    assert got["rejected"] >= len(summary.bad_rows) > 0
    assert got["source"] == "build"
    # the register leaves things unknown and the enrichment derives some of them
    assert got["missing_euro"] > 0 and got["derived"]["euro"] > 0
    assert got["missing_category"] > 0 and got["derived"]["category"] > 0
    # the wire message's field names, exactly
    assert set(got) == {
        "records",
        "missing_category",
        "missing_euro",
        "missing_fuel",
        "derived",
        "unknown_codes",
        "rejected",
        "source",
    }


def test_lez_loader_info_shows_the_figures(tmp_path: Path, key_file: Path) -> None:
    synth(300, 4, tmp_path / "reg")
    store = _build(tmp_path, key_file, tmp_path / "reg" / "extract.csv")
    out = subprocess.run(
        [sys.executable, "-m", "loader", "info", "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    shown = json.loads(out)["data_quality"]
    assert shown["records"] == json.loads(out)["versions"]
    assert shown["source"] == "build"


def test_counts_add_up_when_versions_are_replaced() -> None:
    rng = np.random.default_rng(2)
    records = vehicle.empty(400)
    records["category"] = rng.integers(0, codes.CATEGORY.size, 400)
    records["euro"] = rng.integers(0, codes.EURO.size, 400)
    records["fuel"] = rng.integers(0, codes.FUEL.size, 400)
    records["kind"] = rng.integers(0, codes.KIND.size, 400)
    records["first_registration"] = rng.integers(9000, 20000, 400)
    whole = count_versions(records)
    first, rest = count_versions(records[:150]), count_versions(records[150:])
    assert first.plus(rest) == whole
    assert whole.minus_versions(first) == rest
    assert DataQuality.from_json(whole.to_json()) == whole
    for workers in (1, 2, 3):  # the build counts its versions in parts on worker threads
        assert _count_versions(records, workers) == whole


def test_registrations_and_compaction_keep_the_figures(
    tmp_path: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    synth(400, 5, tmp_path / "reg")
    store = _build(tmp_path, key_file, tmp_path / "reg" / "extract.csv")
    built = _quality(store)
    regs = tmp_path / "regs.csv"
    regs.write_text(
        "plate,country,zone,region,kind,valid_from,valid_until,euro\n"
        "1-ABC-234,BE,Gent,,DAY_PASS,2026-10-20,,\n"
    )
    import_registrations(store, regs, keyer)
    assert _quality(store) == built
    StoreBuilder(store).compact()
    assert _quality(store) == built
    assert store_versions_counted(store) == {k: built[k] for k in store_versions_counted(store)}


def _quality(store: Path) -> dict[str, Any] | None:
    reader = open_store(store)
    try:
        return reader.meta.data_quality
    finally:
        reader.close()
