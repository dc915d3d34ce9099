"""The bench checks at its start that its scratch folder's disk can hold a run."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_the_bench_refuses_to_start_on_a_disk_that_cannot_hold_it(tmp_path: Path) -> None:
    """A full disk once failed an install after a bench: the bench now says at its start how
    much it needs, what its folder holds already and how much more to free."""
    from bench.run import require_disk_space

    with (tmp_path / "register.csv").open("wb") as held:
        held.truncate(3 << 30)  # 3 GiB reused by the next run (sparse: no disk taken)
    require_disk_space(tmp_path, 12 << 30, free=9 << 30)  # 3 held + 9 free: enough
    with pytest.raises(SystemExit) as refused:
        require_disk_space(tmp_path, 12 << 30, free=5 << 30)
    message = str(refused.value)
    assert "needs about 12 GiB" in message and "3.0 GiB there already" in message
    assert "5.0 GiB free" in message and "free 4.0 GiB more" in message
