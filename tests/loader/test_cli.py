"""`lez-loader build --rules`: only the default directory may be missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lez.store import open_store
from loader.__main__ import main
from tests.support.extracts import row, write_extract

REPO = Path(__file__).resolve().parents[2]


def _build(tmp_path: Path, key_file: Path, *extra: str) -> int:
    extract = write_extract(tmp_path / "x.csv", [row("1-ABC-234")])
    store = tmp_path / "store"
    return main(["build", str(extract), "--key", str(key_file), "--out", str(store), *extra])


def _rulesets(tmp_path: Path) -> tuple[str, ...]:
    reader = open_store(tmp_path / "store")
    try:
        return reader.meta.rulesets
    finally:
        reader.close()


def test_explicit_missing_rules_directory_is_an_error(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(tmp_path, key_file, "--rules", str(tmp_path / "nope")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lez-loader build: --rules {tmp_path / 'nope'}: no such directory")
    assert "leave --rules and LEZ_RULES unset" in err
    assert not (tmp_path / "store" / "current").exists()


def test_missing_rules_directory_from_the_environment_is_an_error(
    tmp_path: Path,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEZ_RULES", str(tmp_path / "nope"))
    assert _build(tmp_path, key_file) == 2
    assert "LEZ_RULES" in capsys.readouterr().err
    assert not (tmp_path / "store" / "current").exists()


def test_default_rules_directory_is_used_when_present_and_the_build_refused_when_absent(
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _build(tmp_path, key_file) == 1  # no ./rules: a store without rules is never published
    err = capsys.readouterr().err
    assert "no rule revisions" in err and "--rules DIR" in err
    assert not (tmp_path / "store" / "current").exists()
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    assert _build(tmp_path, key_file) == 0
    expected = tuple(sorted(p.stem for p in (REPO / "rules").glob("*.toml")))
    assert expected and _rulesets(tmp_path) == expected


def test_explicit_rules_directory_is_compiled(tmp_path: Path, key_file: Path) -> None:
    assert _build(tmp_path, key_file, "--rules", str(REPO / "rules")) == 0
    assert _rulesets(tmp_path) == tuple(sorted(p.stem for p in (REPO / "rules").glob("*.toml")))
