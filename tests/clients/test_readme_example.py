"""The README's Python example, run as written against a test server."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from tests.clients.conftest import ZONE
from tests.server.conftest import ServerThread

ROOT = Path(__file__).resolve().parents[2]


def _readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### From Python") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```\n", start)]


def test_the_readme_example_runs_as_written(live_server: ServerThread) -> None:
    code = _readme_python_example()
    assert '"127.0.0.1:50051"' in code and f'zone="{ZONE}"' in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("127.0.0.1:50051", live_server.target), "README", "exec"), {})
    single, batch = out.getvalue().splitlines()
    assert single.startswith("ALLOWED ")
    assert batch == "['ALLOWED', 'NOT_ALLOWED'] 2"
