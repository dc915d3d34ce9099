"""Loader settings: one frozen object built once from the command line and LEZ_* variables."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lez.store.writer import DEFAULT_MAP_SIZE

DEFAULT_RETENTION_DAYS: Final = 183
"""Data is kept until 6 months after a plate is crossed out (docs/sources.md: DIV-VMM protocol
section X; docs/rules.md#history-and-retention)."""
DEFAULT_MAX_REJECT_SHARE: Final = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class LoaderConfig:
    """Everything a build needs. Paths are explicit; nothing is read from a settings module."""

    store_root: Path  # store root: builds/ and the `current` link live here
    key_file: Path  # HMAC key file (`lez-loader keygen`); never copied into the store
    rules_dir: Path | None = None  # rule revisions compiled into the store (None: none)
    reports_dir: Path  # build reports and rejects files
    source_date: dt.date | None = None  # date of the extract (default: newest valid_from)
    retention_days: int = DEFAULT_RETENTION_DAYS  # closed versions older than this are purged
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE  # above this share of bad rows: fail
    workers: int = 2  # threads for validation, keying and the sort's gathers
    map_size: int = DEFAULT_MAP_SIZE  # LMDB map size (sparse)
    keep_builds: int = 2  # published builds kept on disk (current + previous)

    def validate(self) -> LoaderConfig:
        if not 0 <= self.max_reject_share <= 1:
            raise ValueError("--max-reject-share is a fraction between 0 and 1")
        if self.retention_days < 0:
            raise ValueError("--retention-days must be 0 or more")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        return self


def env_path(name: str, default: str) -> Path:
    """A path from a LEZ_* variable or the default."""
    return Path(os.environ.get(name, default))
