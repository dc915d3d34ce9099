"""`lez-div`: certificates, generation and option errors as one-line messages."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from div_standin.__main__ import main
from div_standin.faults import Fault, parse_option
from lez.errors import StandinError


def test_certs_writes_the_set_with_private_keys_0600(tmp_path: Path) -> None:
    assert main(["certs", "--out", str(tmp_path / "c")]) == 0
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == sorted(f"{n}.{e}" for n in ("ca", "server", "client") for e in ("pem", "key"))
    for key in (tmp_path / "c").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_generate_writes_a_feed(
    extract: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "feed"
    assert (
        main(
            ["generate", "--extract", str(extract), "--out", str(out), "--days", "2", "--seed", "4"]
        )
        == 0
    )
    assert len(list((out / "days").glob("*.jsonl"))) == 2
    assert "2 days from" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--extract", "missing.csv", "--out", "x", "--days", "1"], "does not exist"),
        (["serve", "--feed", "nowhere", "--certs", "nowhere"], "not a feed directory"),
        (["serve", "--feed", "nowhere", "--certs", "c", "--fault", "boom"], "unknown fault kind"),
    ],
)
def test_user_errors_are_one_line(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_fault_options() -> None:
    assert parse_option("503:2") == Fault(kind="503", count=2)
    assert parse_option("drop") == Fault(kind="drop", count=1)
    assert parse_option("unavailable:always").count is None
    assert parse_option("delay:1", delay=0.5).seconds == 0.5
    with pytest.raises(StandinError, match="COUNT"):
        parse_option("503:0")


def test_help_describes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("certs", "generate", "serve"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--per-day", "--bad-per-day", "--port-file", "--fault", "--start", "--seed"):
        assert option in text
