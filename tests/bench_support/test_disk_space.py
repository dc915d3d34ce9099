"""The bench checks at its start that its scratch folder's disk can hold a run."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_the_bench_refuses_to_start_on_a_disk_that_cannot_hold_it(tmp_path: Path) -> None:
    """A full disk once failed an install after a bench: the bench now says at its start how
    much it needs, what its folder holds already and how much more to free."""
    from bench.run import require_disk_space

    (tmp_path / "register.csv").write_bytes(bytes(3 << 20))
    require_disk_space(tmp_path, 4 << 20, free=2 << 20)  # 3 MiB held + 2 free: enough
    with pytest.raises(SystemExit, match=r"free 0\.0 GiB more|point --scratch"):
        require_disk_space(tmp_path, 8 << 20, free=1 << 20)
    with pytest.raises(SystemExit, match="needs about 2 GiB"):
        require_disk_space(tmp_path, 2 << 30, free=0)
