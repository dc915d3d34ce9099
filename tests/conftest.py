"""Shared fixtures: a clean environment, a throwaway HMAC key and small extracts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lez.keys import PlateKeyer, generate_key_file, load_key


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("LEZ_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "hmac.key"
    generate_key_file(path)
    return path


@pytest.fixture
def keyer(key_file: Path) -> PlateKeyer:
    return load_key(key_file)
