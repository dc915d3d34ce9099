"""Synthetic DIV register: deterministic, valid, unique plates, coherent history, realistic mix."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lez import codes, plates
from lez.days import parse_day, to_day
from loader import synth

SOURCE = dt.date(2026, 11, 1)
CODE_LISTS = {
    "category": codes.CATEGORY,
    "kind": codes.KIND,
    "bodywork": codes.BODYWORK,
    "fuel": codes.FUEL,
    "euro": codes.EURO,
    "status": codes.STATUS,
}

Rows = list[dict[str, str]]


def _read(path: Path) -> Rows:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> tuple[synth.SynthSummary, Rows]:
    out = tmp_path_factory.mktemp("synth20k")
    summary = synth.generate(20_000, 11, out, source_date=SOURCE)
    return summary, _read(summary.extract)


def _by_plate(rows: Rows) -> dict[str, Rows]:
    grouped: dict[str, Rows] = defaultdict(list)
    for row in rows:
        grouped[row["plate"]].append(row)
    for versions in grouped.values():
        versions.sort(key=lambda r: r["valid_from"])
    return grouped


def test_header_is_the_documented_extract_format(register: tuple[synth.SynthSummary, Rows]) -> None:
    summary, _ = register
    with open(summary.extract, encoding="utf-8") as f:
        header = f.readline().strip()
    assert header == ",".join(synth.COLUMNS)
    doc = (Path(__file__).parents[2] / "docs" / "extract-format.md").read_text(encoding="utf-8")
    assert header in doc


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = synth.generate(1_000, 5, tmp_path / "a", bad_rows=3)
    b = synth.generate(1_000, 5, tmp_path / "b", bad_rows=3)
    c = synth.generate(1_000, 6, tmp_path / "c")
    assert a.extract.read_bytes() == b.extract.read_bytes()
    assert a.extract.read_bytes() != c.extract.read_bytes()
    assert a.bad_rows == b.bad_rows
    gz = synth.generate(1_000, 5, tmp_path / "gz", compress=True, bad_rows=3)
    assert gz.extract.name == "extract.csv.gz"
    assert gzip.decompress(gz.extract.read_bytes()) == a.extract.read_bytes()
    meta = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert meta["seed"] == 5 and meta["plates"] == 1_000 and meta["rows"] == a.rows


def test_plates_valid_and_unique_after_normalisation(
    register: tuple[synth.SynthSummary, Rows],
) -> None:
    summary, rows = register
    raw = {r["plate"] for r in rows}
    assert len(raw) == summary.plates
    normalised = set()
    for plate in raw:
        text, rule = plates.try_normalise(plate)
        assert rule is plates.PlateRule.OK, rule
        normalised.add(text)
    assert len(normalised) == len(raw)
    series = Counter(plates.series(plates.Plate(p)) for p in normalised)
    for kind in (
        plates.PlateSeries.CURRENT,
        plates.PlateSeries.LETTER_PREFIX,
        plates.PlateSeries.OLD_1973,
        plates.PlateSeries.OLD_2008,
        plates.PlateSeries.PERSONALISED,
        plates.PlateSeries.DIPLOMATIC,
    ):
        assert series[kind] > 0, kind
    assert series[plates.PlateSeries.CURRENT] > 0.6 * len(raw)
    prefixes = Counter(p[:2] for p in raw)
    for prefix in ("1-", "2-", "G-", "O-", "Q-", "M-", "W-"):
        assert prefixes[prefix] > 0, prefix
    assert all(len(t) <= 8 for t in normalised)


def test_codes_are_known_except_the_deliberate_unknowns(
    register: tuple[synth.SynthSummary, Rows],
) -> None:
    summary, rows = register
    unknown: Counter[str] = Counter()
    for row in rows:
        for column, lst in CODE_LISTS.items():
            value = row[column]
            if value and not lst.is_known(value):
                assert value == synth.UNKNOWN_CODES[column]
                unknown[column] += 1
        assert row["plate_type"] in synth.PLATE_TYPES
        assert row["electric"] in ("", "0", "1")
        assert row["nis"] == "" or (len(row["nis"]) == 5 and row["nis"].isdigit())
    assert sum(unknown.values()) == summary.unknown_codes
    assert 0 < summary.unknown_codes < 0.001 * len(rows)


def test_no_unknown_codes_when_share_is_zero(tmp_path: Path) -> None:
    summary = synth.generate(3_000, 2, tmp_path, unknown_code_share=0.0)
    assert summary.unknown_codes == 0
    for row in _read(summary.extract):
        for column, lst in CODE_LISTS.items():
            assert not row[column] or lst.is_known(row[column])


def test_versions_do_not_overlap_and_history_is_coherent(
    register: tuple[synth.SynthSummary, Rows],
) -> None:
    summary, rows = register
    source = to_day(SOURCE)
    for versions in _by_plate(rows).values():
        spans = [
            (parse_day(v["valid_from"]), parse_day(v["valid_to"]) if v["valid_to"] else None)
            for v in versions
        ]
        for (start, end), (nxt, _) in itertools.pairwise(spans):
            assert end is not None and start < end <= nxt
        assert all(end is None or end <= source for _, end in spans)
        assert all(start <= source for start, _ in spans)
        for v in versions[:-1]:
            assert v["status"] == "A"
        last = versions[-1]
        assert (last["status"] == "S") == (last["valid_to"] != "")
        for v in versions:
            if v["first_registration"] and v["last_registration"]:
                assert v["first_registration"] <= v["last_registration"] <= v["valid_from"]
            if v["max_mass"] and v["running_mass"]:
                assert int(v["running_mass"]) <= int(v["max_mass"])
    counts = Counter(len(v) for v in _by_plate(rows).values())
    assert sum(counts.values()) == summary.plates
    assert summary.versions_per_plate == dict(sorted(counts.items()))


def test_shares_roughly_as_configured(register: tuple[synth.SynthSummary, Rows]) -> None:
    summary, rows = register
    n = summary.plates
    current = [v[-1] for v in _by_plate(rows).values()]
    multi = sum(c for k, c in summary.versions_per_plate.items() if k >= 2) / n
    assert 0.25 <= multi <= 0.35
    crossed = summary.by_status["S"] / n
    assert 0.02 <= crossed <= 0.05
    assert summary.crossed_out_past_retention > 0.5 * summary.by_status["S"]
    assert 8.5 <= summary.mean_car_age_years <= 11.5

    # passenger cars (normal plates, M1): Statbel's car fuel mix of 2024
    cars = [r for r in current if r["category"] == "M1" and r["plate_type"] == "N"]
    fuel = Counter(r["fuel"] for r in cars)
    share = {k: v / len(cars) for k, v in fuel.items()}
    assert share["01"] == pytest.approx(0.51, abs=0.03)
    assert share["02"] == pytest.approx(0.32, abs=0.03)
    assert share["07"] + share["08"] == pytest.approx(0.12, abs=0.02)
    assert share["04"] == pytest.approx(0.04, abs=0.015)
    assert len(cars) / n == pytest.approx(0.70, abs=0.05)

    by_class = {k: v / n for k, v in summary.by_class.items()}
    for name, expected in zip(synth.CLASS_NAMES, synth.CLASS_SHARES, strict=True):
        assert by_class[name] == pytest.approx(expected, abs=0.01 + expected * 0.2), name

    mn = [r for r in current if r["category"][:1] in ("M", "N")]
    no_euro = sum(1 for r in mn if not r["euro"]) / len(mn)
    assert 0.02 <= no_euro <= 0.15
    no_category = sum(1 for r in current if not r["category"]) / n
    assert 0.005 <= no_category <= 0.05
    old = sum(
        1 for r in current if r["first_registration"] and r["first_registration"] < "1996-11-01"
    )
    assert 0.01 <= old / n <= 0.10
    nis = Counter(r["nis"] for r in current)
    assert nis["11002"] > 0.03 * n and nis["44021"] > 0.01 * n
    assert sum(c for k, c in nis.items() if k.startswith("210")) > 0.05 * n


def test_euro_norm_follows_first_registration(register: tuple[synth.SynthSummary, Rows]) -> None:
    _, rows = register
    for r in rows:
        first, euro = r["first_registration"], r["euro"]
        if r["category"] != "M1" or not codes.EURO.is_known(euro) or not first:
            continue
        if first >= "2021-01-01":
            assert euro == "6D"
        elif first < "1992-07-01":
            assert euro in ("0", "1")  # early adopters may meet the next norm
        elif "2011-01-01" <= first < "2015-09-01":
            assert euro in ("5", "5A", "5B", "6", "6A", "6B")
    tractors = [r for r in rows if r["plate"].startswith("G-")]
    assert tractors and all(r["category"] in ("T", "") for r in tractors)
    trailers = [r for r in rows if r["category"] in ("O1", "O2", "O3", "O4")]
    assert trailers
    assert all(r["fuel"] in ("", "14") and r["euro"] in ("", "7") for r in trailers)


def test_bad_rows_at_reported_lines(tmp_path: Path) -> None:
    summary = synth.generate(1_000, 9, tmp_path, bad_rows=6)
    assert len(summary.bad_rows) == 6
    lines = summary.extract.read_text(encoding="utf-8").splitlines()
    assert len(lines) == summary.rows + 6 + 1
    bad = set(summary.bad_rows)
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        ok = len(fields) == len(synth.COLUMNS)
        if ok:
            row = dict(zip(synth.COLUMNS, fields, strict=True))
            ok = plates.try_normalise(row["plate"])[1] is plates.PlateRule.OK
            try:
                for col in ("first_registration", "last_registration", "valid_from", "valid_to"):
                    if row[col]:
                        parse_day(row[col])
            except ValueError:
                ok = False
        assert ok == (number not in bad), number
