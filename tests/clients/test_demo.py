"""`clients.demo` helpers that need no server: a failing command is reported without the plate
it was given."""

from __future__ import annotations

import sys

import pytest

from clients.demo import PLATE_PLACEHOLDER, _run

PLATE = "1-ABC-234"


def test_a_failing_command_is_shown_without_its_plate(capsys: pytest.CaptureFixture[str]) -> None:
    cmd = [sys.executable, "-c", "import sys; sys.exit(3)", PLATE, "--zone", "Gent"]
    with pytest.raises(SystemExit) as failed:
        _run(cmd, plate=PLATE)
    message = str(failed.value.code)
    assert "failed with exit status 3" in message and "--zone Gent" in message
    assert PLATE_PLACEHOLDER in message and PLATE not in message


def test_a_command_that_works_prints_its_output(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run([sys.executable, "-c", "print('fine')"], plate=PLATE)
    assert out.strip() == "fine"
    assert "fine" in capsys.readouterr().out
