"""The instants bench (`bench.instants_bench`): its reads ask the same questions as the days
they come from, and a small run through the real server decides both streams alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.instants_bench import DAY_FROM, DAY_TO, measure, read_instants
from lez.days import brussels_days_seconds, to_day

BIN = Path(sys.executable).parent


def test_the_instants_fall_on_their_reads_brussels_days() -> None:
    days = np.arange(to_day(DAY_FROM), to_day(DAY_TO) + 1, dtype=np.int32).repeat(500)
    instants = read_instants(days, seed=3)
    derived, seconds = brussels_days_seconds(np.floor_divide(instants, 1000))
    assert (derived == days).all()
    assert seconds.min() < 3600 and seconds.max() > 82_800  # spread over the whole day


@pytest.mark.slow
def test_a_small_run_decides_both_streams_alike(tmp_path: Path) -> None:
    register, key, store = tmp_path / "register", tmp_path / "hmac.key", tmp_path / "store"
    loader = [str(BIN / "lez-loader")]
    subprocess.run([*loader, "synth", "--plates", "3000", "--seed", "4", "--out", str(register)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([*loader, "keygen", "--key", str(key)], check=True, capture_output=True)
    extract = register / "extract.csv"
    subprocess.run([*loader, "build", str(extract), "--key", str(key), "--out", str(store)],
                   check=True, capture_output=True)  # fmt: skip
    got = measure(store, key, extract, pairs=60_000, runs=1, scratch=tmp_path / "server")
    assert got["stream"]["same_decisions_and_days"] is True
    assert got["stream"]["pairs"] == 60_000 and got["pipeline"]["pairs"] == 50_000
    for figure in (got["stream"], got["pipeline"]):
        assert figure["days_s"]["median"] > 0 and figure["instants_s"]["median"] > 0
