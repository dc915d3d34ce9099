"""The README's "Using it" commands: in a folder of their own (never what `make run` keeps),
and, run as written in that order, each does what its comment says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "var/try/"


def _using_it() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Using it\n") :]
    start = section.index("```\n") + 4
    return section[start : section.index("\n```", start)].splitlines()


def _demo_paths() -> set[str]:
    """What `make run` (clients.demo with --var var) writes under var/."""
    source = "".join(
        (ROOT / "clients" / name).read_text(encoding="utf-8")
        for name in ("demo.py", "demo_sync.py")
    )
    return set(re.findall(r'var / f?"([a-z.-]+)', source)) | {"audit", "server.log"}


def test_using_it_starts_by_reaching_the_commands() -> None:
    assert _using_it()[0] == 'make install && export PATH="$PWD/.venv/bin:$PATH"'


def test_using_it_stays_out_of_what_make_run_keeps() -> None:
    paths = {m for line in _using_it() for m in re.findall(r"\bvar/[^\s\"')]*", line)}
    assert paths and all(p.startswith(FOLDER) for p in paths), sorted(paths)
    demo = _demo_paths()
    assert {"keys", "store", "demo", "div"} <= demo  # what the check below protects
    assert "try" not in demo


@pytest.mark.slow
def test_using_it_runs_as_written(tmp_path: Path) -> None:
    """The commands after `make install`, in a scratch directory with the project's rules, the
    environment's commands on PATH, and the server on a free port (LEZ_ADDRESS and friends, as
    the README says)."""
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    script = "\n".join(
        [
            "trap 'echo \"FAILED($?): $BASH_COMMAND\"' ERR",
            *_using_it()[1:],
        ]
    )
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        PYTHONPATH=str(ROOT),
        LEZ_ADDRESS=address,
        LEZ_SERVER=address,
        LEZ_PROBE_ADDRESS=address,
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    failed = [line for line in out.splitlines() if line.startswith("FAILED(")]
    assert len(failed) == 1 and "lez-loader reconcile" in failed[0], out  # "exit 1" as it says
    assert done.returncode == 0, out
    for shown in (
        "data_quality",
        f"{address}: SERVING",
        "1-ABC-234 (BE) in Gent on 2026-10-20: UNKNOWN_PLATE",
        "1,000 pairs for zone Antwerpen",
        "1-ABC-234 (BE) in Gent on 2026-10-20: ALLOWED (DAY_PASS)",
        "up to date through",
        ": DIFFERENT",
        "folding layer",
        "intact",
        "2 consultation(s) of this plate",
    ):
        assert shown in out, (shown, out)
    assert "Traceback" not in out
