"""`clients.demo`: a failing command is reported without the plate it was given, and the demo
checks its own claims (an announced answer that differs fails the run, the closing list is what
was seen, a store is reused only when it is the demo's)."""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

import pytest

from clients import demo
from clients.cli_output import print_answer
from clients.decisions import CheckAnswer
from clients.demo import PLATE_PLACEHOLDER, Example, _run
from clients.demo_claims import OPEN_ENDED, OutcomesSeen, StoreStamp, expect, shown_outcome
from clients.enum_names import OUTCOME_NAMES
from tests.clients.conftest import ZONE
from tests.server.conftest import ServerThread

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


# -- the demo checks its own claims (clients.demo_claims) ----------------------------------------


def _printed(outcome: str, *, open_ended: bool = False, reason: str | None = "SOME_REASON") -> str:
    answer = CheckAnswer(
        outcome=outcome,
        reason=reason,
        allowed_until=None if open_ended or outcome != "ALLOWED" else dt.date(2027, 1, 1),
        open_ended=open_ended,
        euro="6",
        derived=frozenset(),
        technical=None,
        snapshot_id="s1",
        revision="r1",
        zone="Gent",
        date=dt.date(2026, 10, 21),
    )
    out = io.StringIO()
    print_answer(PLATE, "BE", answer, out)
    return out.getvalue()


@pytest.mark.parametrize("outcome", OUTCOME_NAMES[1:])
def test_the_outcome_lez_check_prints_is_read_back(outcome: str) -> None:
    assert shown_outcome(_printed(outcome)) == outcome
    assert shown_outcome(_printed(outcome, reason=None)) == outcome
    assert shown_outcome(_printed("ALLOWED", open_ended=True)) == OPEN_ENDED


def test_an_answer_other_than_the_announced_one_fails_the_run() -> None:
    assert expect("NOT_ALLOWED", _printed("NOT_ALLOWED"), "check 1") == "NOT_ALLOWED"
    assert expect("ALLOWED", _printed("ALLOWED", open_ended=True), "check 1") == OPEN_ENDED
    with pytest.raises(SystemExit) as failed:
        expect("NOT_ALLOWED", _printed("ALLOWED"), "single check 3 of 7")
    message = str(failed.value.code)
    assert (
        message == "demo: single check 3 of 7: expected NOT_ALLOWED, 'lez check' answered ALLOWED"
    )
    with pytest.raises(SystemExit):
        expect(OPEN_ENDED, _printed("ALLOWED"), "check 2")  # an end date is not open-ended
    with pytest.raises(SystemExit):
        expect("ALLOWED", "lez: error: cannot reach the server\n", "check 3")


def test_the_closing_list_is_the_outcomes_seen(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(
        "plate,country,day,outcome,reason\n"
        "A,BE,2026-10-20,NOT_ALLOWED,EURO_BELOW_MINIMUM\n"
        "B,BE,2026-10-20,UNKNOWN_PLATE,NOT_IN_REGISTER\n"
        "C,BE,2026-10-20,NOT_ALLOWED,EURO_BELOW_MINIMUM\n"
    )
    seen = OutcomesSeen()
    seen.add_decisions_file("batch", decisions)
    seen.add("single checks", OPEN_ENDED)
    assert seen.names() == ["ALLOWED", "NOT_ALLOWED", "UNKNOWN_PLATE"]
    assert seen.counts["batch"]["NOT_ALLOWED"] == 2
    line = seen.closing_line()
    assert line.startswith("outcomes seen: ALLOWED, NOT_ALLOWED, UNKNOWN_PLATE (not seen")
    assert "INSUFFICIENT_DATA, COMBINATION_MISMATCH, INVALID" in line


def test_a_store_is_reused_only_when_it_is_the_demos(tmp_path: Path) -> None:
    extract = tmp_path / "extract.csv"
    extract.write_text("plate\n")
    stamp = StoreStamp.of(extract, "snap-1")
    stamp.write(tmp_path / "stamp.json")
    again = StoreStamp.read(tmp_path / "stamp.json")
    assert again == stamp
    assert stamp.reusable(extract, "snap-1")
    assert not stamp.reusable(extract, "snap-2")  # rebuilt or synced by someone else
    assert not stamp.reusable(extract, None)  # no store published
    extract.write_text("plate\n1-ABC-234\n")  # another extract at the same path
    assert not stamp.reusable(extract, "snap-1")
    (tmp_path / "bad.json").write_text("{}")
    assert StoreStamp.read(tmp_path / "bad.json") is None


def test_the_demo_fails_when_a_single_check_answers_otherwise(
    live_server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against a real server and the real `lez check`: the demo's claim about an allowed plate
    is planted wrong, and the run stops with both outcomes named."""
    right = [Example("ALLOWED", "1-ABC-234", ZONE), Example("UNKNOWN_PLATE", "9-ZZZ-999", ZONE)]
    wrong = [*right, Example("NOT_ALLOWED", "1-ABC-234", ZONE)]
    for examples, fails in ((right, False), (wrong, True)):
        monkeypatch.setattr(demo, "pick_examples", lambda *_args, ex=examples: ex)
        seen = OutcomesSeen()
        if not fails:
            demo.single_checks(live_server.target, Path("x"), 1, demo.Timings(), seen)
            assert seen.names() == ["ALLOWED", "UNKNOWN_PLATE"]
            continue
        with pytest.raises(SystemExit) as failed:
            demo.single_checks(live_server.target, Path("x"), 1, demo.Timings(), seen)
        message = str(failed.value.code)
        assert "check 3 of 3: expected NOT_ALLOWED, 'lez check' answered ALLOWED" in message
        assert "1-ABC-234" not in message
