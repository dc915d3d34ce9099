"""A store without rule revisions is never published: the build fails before writing anything
and the published store stays as it was (a rules-less store would crash-loop every server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lez.errors import BuildFailed
from lez.store.reader import current_build
from loader.build import build_store
from loader.config import LoaderConfig
from tests.support.extracts import row, write_extract

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, key_file: Path, rules_dir: Path | None) -> LoaderConfig:
    return LoaderConfig(
        store_root=tmp_path / "store",
        key_file=key_file,
        rules_dir=rules_dir,
        reports_dir=tmp_path / "store" / "reports",
        workers=1,
    )


def test_build_without_rules_fails_and_keeps_the_published_store(
    tmp_path: Path, key_file: Path
) -> None:
    extract = write_extract(tmp_path / "x.csv", [row("1-ABC-234")])
    good = build_store(_config(tmp_path, key_file, REPO / "rules"), extract)
    published = current_build(tmp_path / "store")
    builds = sorted((tmp_path / "store" / "builds").iterdir())
    with pytest.raises(BuildFailed) as failed:
        build_store(_config(tmp_path, key_file, None), extract)
    message = failed.value.message
    assert "no rule revisions" in message and "--rules DIR" in message
    assert "nothing was built or published" in message
    assert not failed.value.report.published  # type: ignore[attr-defined]
    assert current_build(tmp_path / "store") == published
    assert published.name == good.snapshot_id
    assert sorted((tmp_path / "store" / "builds").iterdir()) == builds  # no build left behind
