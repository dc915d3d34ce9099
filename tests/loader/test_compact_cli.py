"""`lez-loader compact`: folds the published layer into a new base when the policy (or --force)
says so, and leaves a base alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lez import vehicle
from lez.keys import KEY_BYTES
from lez.registrations import REGISTRATION_DTYPE
from lez.store import StoreBuilder, StoreMeta, content_digest, group_by_key, open_store
from lez.store.columns import empty_table
from loader.__main__ import main


def _store(root: Path) -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 256, size=(200, KEY_BYTES), dtype=np.uint8)
    rec = vehicle.empty(200)
    rec["valid_from"] = rng.integers(0, 1000, 200)
    meta = StoreMeta(
        format_version=vehicle.FORMAT_VERSION,
        key_id="k",
        snapshot_id="base",
        snapshot_seq=1,
        source_date="2026-11-01",
        built_at="2026-11-01T00:00:00+00:00",
        plates=200,
        versions=200,
        registrations=0,
    )
    builder = StoreBuilder(root)
    builder.build(
        meta=meta,
        vehicles=group_by_key(keys, rec),
        registrations=empty_table(REGISTRATION_DTYPE),
        rulesets={"r": "text"},
    )
    changed = rec[:30].copy()
    changed["euro"] = 7
    builder.publish_changes(
        group_by_key(keys[:30], changed), meta=replace(meta, snapshot_id="day1", snapshot_seq=2)
    )


def test_compact_follows_the_policy_then_folds_the_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    _store(root)
    reader = open_store(root)
    digest = content_digest(reader)
    reader.close()
    assert main(["compact", "--store", str(root)]) == 0  # 30 keys of 200: within the policy
    assert "within the policy" in capsys.readouterr().out
    assert (root / "current").resolve().name == "day1"
    assert main(["compact", "--store", str(root), "--max-layer-share", "0.1"]) == 0
    assert "published base" in capsys.readouterr().out
    reader = open_store(root)
    try:
        assert not reader.meta.is_layer and reader.meta.snapshot_seq == 3
        assert content_digest(reader) == digest
    finally:
        reader.close()
    assert main(["compact", "--store", str(root), "--force"]) == 0
    assert "nothing to compact" in capsys.readouterr().out


def test_compact_without_a_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compact", "--store", str(tmp_path / "none")]) == 2
    assert "no published store" in capsys.readouterr().err
