"""The command line of `lez`: its options and commands (argparse), the readable argument types,
and the client settings the options, the environment and the defaults give.

Errors are one line plus a pointer to `--help` (exit status 2) and never quote what was typed
as an argument: it may be a plate (`OneLineErrorParser`). The commands themselves are
`clients.cli`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from clients import errors
from clients.day_input import parse_when
from clients.enum_names import OUTCOME_NAMES, REASON_NAMES
from clients.settings import DEFAULT_SERVER, ClientSettings
from lez.days import from_day, parse_day
from lez.version import version_line

PROG: Final = "lez"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
UNRECOGNIZED: Final = "unrecognized arguments: "
INVALID_CHOICE: Final = "invalid choice: "
CHOOSE_FROM: Final = "(choose from"

EPILOG: Final = """\
examples:
  lez info
  lez check 1-ABC-234 --zone Gent
  lez check 1-ABC-234 --zone Gent --date 2026-10-20 --first-registration 2019-03-01
  lez check AB123CD --country FR --zone Antwerpen --date 2026-10-20
  lez batch reads.csv decisions.csv --zone Antwerpen
  lez batch last-month.csv warnings.csv --zone Brussels --as-of 2028-01-01
  lez campaign --zone Brussels --date 2028-01-01 --nis 21004,21009 letters.csv --plot steps.png
  lez recheck 1-ABC-234 --zone Gent --date 2026-03-02 --outcome NOT_ALLOWED
  lez --server 10.0.0.5:50051,10.0.0.6:50051 --ca ca.pem --cert gent.pem --key gent.key \\
      batch reads.csv decisions.csv --zone Gent

batch input (CSV with a header): plate,country,day  (day as YYYY-MM-DD)
                             or: plate,country,timestamp  (ISO 8601 with offset, as ANPR
  cameras give it, e.g. 2026-10-20T18:36:12.345+02:00; turned into the Europe/Brussels day)
  country may be left out or empty (BE). Rows with an unreadable plate, country or day are
  answered INVALID and the batch goes on.

environment: LEZ_SERVER, LEZ_CA_CERT, LEZ_CLIENT_CERT, LEZ_CLIENT_KEY, LEZ_TIMEOUT set the
defaults of --server, --ca, --cert, --key, --timeout.
exit status: 0 answered, 1 the call failed, 2 bad usage or input, 130 interrupted.
"""


def _date_arg(text: str) -> dt.date:
    try:
        return from_day(parse_day(text))
    except ValueError as exc:  # a calendar or range problem, or the form (e.g. 2026-10-20)
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when_arg(text: str) -> dt.date:
    """A date, or an ISO 8601 timestamp (its Brussels calendar day)."""
    try:
        return from_day(parse_when(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _country_arg(text: str) -> str:
    value = text.strip().upper()
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise argparse.ArgumentTypeError("expected a two-letter ISO 3166 country code, e.g. BE")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def outcome_arg(text: str) -> str:
    value = text.strip().upper().removeprefix("OUTCOME_")
    if value not in OUTCOME_NAMES[1:]:
        raise argparse.ArgumentTypeError("one of " + ", ".join(OUTCOME_NAMES[1:]))
    return value


def reason_arg(text: str) -> str:
    value = text.strip().upper().removeprefix("REASON_")
    if value not in REASON_NAMES[1:]:
        raise argparse.ArgumentTypeError("a reason name such as EURO_BELOW_MINIMUM")
    return value


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """Connection options, accepted before or after the command (defaults resolved later)."""
    group = parser.add_argument_group("connection")
    unless_given = argparse.SUPPRESS
    group.add_argument(
        "--server",
        default=unless_given,
        metavar="ADDR[,ADDR...]",
        help=f"server address(es) host:port; several are load-balanced round-robin "
        f"[env LEZ_SERVER; default {DEFAULT_SERVER}]",
    )
    group.add_argument(
        "--ca", type=Path, default=unless_given, help="CA certificate PEM (TLS) [LEZ_CA_CERT]"
    )
    group.add_argument(
        "--cert",
        type=Path,
        default=unless_given,
        help="client certificate PEM (mutual TLS) [LEZ_CLIENT_CERT]",
    )
    group.add_argument(
        "--key", type=Path, default=unless_given, help="client private key PEM [LEZ_CLIENT_KEY]"
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        default=unless_given,
        metavar="SECONDS",
        help="deadline of a call (a batch: of the whole batch) [LEZ_TIMEOUT; default 30, "
        "batch none]",
    )


def _unexpected(count: int | None) -> str:
    """The error for arguments no command takes, without them: they may be plates."""
    if count == 1:
        what = "1 unexpected argument (not shown: it may be a plate)"
    else:
        number = "" if count is None else f"{count} "
        what = f"{number}unexpected arguments (not shown: they may be plates)"
    return (
        f"{what}; give one plate per 'lez check' (quote a plate with spaces, e.g. '1 ABC 234') "
        "or use 'lez batch' for many, and only the options 'lez COMMAND --help' lists"
    )


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with errors of one line that never quote what was typed as an argument (it
    may be a plate): extra arguments are counted, a wrong command is not repeated."""

    def parse_command_line(self, argv: Sequence[str] | None) -> argparse.Namespace:
        args, extra = self.parse_known_args(argv)
        if extra:
            self.error(_unexpected(len(extra)))
        return args

    def error(self, message: str) -> NoReturn:  # one line plus a pointer to --help, exit 2
        if message.startswith(UNRECOGNIZED):  # argparse lists them
            message = _unexpected(None)
        head, invalid, rest = message.partition(INVALID_CHOICE)
        if invalid:  # argparse quotes the word typed where a command was expected
            choices = rest[rest.find(CHOOSE_FROM) :] if CHOOSE_FROM in rest else ""
            message = f"{head}not a command {choices}".rstrip()
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}\n(see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> OneLineErrorParser:
    """The parser of `lez` and its commands."""
    parser = OneLineErrorParser(
        prog=PROG,
        description="Ask the LEZ access-decision service whether vehicles may enter a Belgian "
        "low-emission zone (Antwerpen, Gent, Brussels) on a day.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line(PROG))
    _connection_options(parser)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineErrorParser
    )
    commands.required = True
    for add_command in (_add_check, _add_batch, _add_campaign, _add_recheck, _add_info):
        add_command(commands)
    return parser


def _add_check(commands: Any) -> None:
    """`lez check`: one plate on one day in one zone."""
    command = commands.add_parser(
        "check",
        help="one plate on one day in one zone",
        description="Ask about one plate on one day in one zone and print the answer: "
        "ALLOWED (with allowed-until), NOT_ALLOWED, UNKNOWN_PLATE, INSUFFICIENT_DATA, "
        "COMBINATION_MISMATCH or INVALID, with the reason and the data used.",
        epilog="example: lez check 1-ABC-234 --zone Gent --date 2026-10-20",
    )
    command.add_argument("plate", help="the plate as written, e.g. 1-ABC-234")
    command.add_argument("--zone", required=True, help="zone name or id (see 'lez info')")
    command.add_argument(
        "--date",
        type=_when_arg,
        default=None,
        help="day asked about, YYYY-MM-DD or an ISO 8601 timestamp [today in Brussels]",
    )
    command.add_argument(
        "--instant",
        default=None,
        help="the moment of a camera read, ISO 8601 with its offset (2026-03-02T05:30:00+01:00); "
        "the server derives the Brussels day and uses the hour (a day pass valid until 06:00)",
    )
    command.add_argument("--country", type=_country_arg, default="BE", help="plate country [BE]")
    command.add_argument(
        "--first-registration",
        type=_date_arg,
        default=None,
        help="first-registration date to match, YYYY-MM-DD (public checker)",
    )
    command.add_argument("--ruleset", default=None, help="pin a rule revision [newest loaded]")
    command.add_argument("--json", action="store_true", help="print the answer as JSON")
    _connection_options(command)


def _add_batch(commands: Any) -> None:
    """`lez batch`: a CSV file of camera reads to a CSV file of decisions."""
    command = commands.add_parser(
        "batch",
        help="a CSV file of camera reads -> a CSV file of decisions",
        description="Send a CSV of camera reads (plate,country,day or plate,country,timestamp) "
        "for one zone and write the decisions, row for row, to OUT. Shows a progress bar on a "
        "terminal and a summary of outcomes at the end.",
        epilog="example: lez batch reads.csv decisions.csv --zone Antwerpen",
    )
    command.add_argument("input", type=Path, metavar="IN.csv", help="camera reads")
    command.add_argument("output", type=Path, metavar="OUT.csv", help="decisions (overwritten)")
    command.add_argument("--zone", required=True, help="zone name or id (see 'lez info')")
    command.add_argument("--ruleset", default=None, help="pin a rule revision [newest loaded]")
    command.add_argument(
        "--as-of",
        type=_date_arg,
        default=None,
        metavar="DATE",
        help="evaluate every read on DATE (YYYY-MM-DD): the register of the read's day, the "
        "rules and registrations of DATE, e.g. last month's reads against a coming step "
        "(warning campaigns; needs the integrator role) [each read's own day]",
    )
    command.add_argument(
        "--chunk-size", type=_positive_int, default=None, help="pairs per chunk [server limit]"
    )
    command.add_argument(
        "--connections",
        type=_positive_int,
        default=None,
        help="connections the batch is spread over [4]",
    )
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.add_argument("--json", action="store_true", help="print the summary as JSON")
    _connection_options(command)


def _nis_list(text: str) -> list[int]:
    try:
        codes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected NIS codes separated by commas, e.g. 21004,21009"
        ) from None
    if not codes:
        raise argparse.ArgumentTypeError("give at least one NIS code, e.g. 11002")
    return codes


def _add_campaign(commands: Any) -> None:
    """`lez campaign`: the vehicles of some municipalities that will lose access to a zone."""
    command = commands.add_parser(
        "campaign",
        help="vehicles of some municipalities that will lose access to a zone (warning letters)",
        description="List the vehicles whose holder lives in the given municipalities (NIS "
        "codes) that are allowed in the zone on the reference day and will not be allowed on "
        "DATE (a new zone's or a stricter step's start), with the reason and the first day "
        "each loses access. Registrations and exemptions valid on DATE count. Writes their "
        "pseudonymised keys to OUT.csv (match them by keying your own plates; the service "
        "never sends plates), shows progress on a terminal and prints the summary. Needs the "
        "integrator role.",
        epilog="example:\n"
        "  lez campaign --zone Brussels --date 2028-01-01 --nis 21004,21009 letters.csv \\\n"
        "      --plot steps.png\n\n"
        "OUT.csv columns: key (32 hex digits), reason, first_day_lost, category, fuel, euro\n"
        "(DIV codes; the key id of the keys is in the summary).\n\n"
        "--plot charts how many vehicles lose access on each day up to DATE (each step's\n"
        "first day, or the day after an exemption ends), by fuel: give the last step as DATE\n"
        "to chart every step before it. It needs matplotlib: pip install 'lez-access[plot]'.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("output", type=Path, metavar="OUT.csv", help="keys (overwritten)")
    command.add_argument("--zone", required=True, help="zone name or id (see 'lez info')")
    command.add_argument(
        "--date",
        type=_date_arg,
        required=True,
        help="the future date, YYYY-MM-DD (a step's start)",
    )
    command.add_argument(
        "--nis",
        type=_nis_list,
        required=True,
        metavar="NIS[,NIS...]",
        help="NIS codes of the holders' municipalities, e.g. 21004,21009",
    )
    command.add_argument(
        "--reference-date",
        type=_date_arg,
        default=None,
        metavar="DATE",
        help="the day the vehicles must still be allowed, YYYY-MM-DD [today in Brussels]",
    )
    command.add_argument("--ruleset", default=None, help="pin a rule revision [newest loaded]")
    command.add_argument(
        "--plot", type=Path, default=None, metavar="FILE.png", help="also draw the chart here"
    )
    command.add_argument("--no-progress", action="store_true", help="no progress display")
    command.add_argument("--json", action="store_true", help="print the summary as JSON")
    _connection_options(command)


def _add_recheck(commands: Any) -> None:
    """`lez recheck`: earlier decisions re-evaluated (appeals)."""
    command = commands.add_parser(
        "recheck",
        help="re-evaluate an earlier decision on today's data (appeals)",
        description="Re-evaluate an earlier decision (or a CSV file of them) on the current "
        "register snapshot and rules, and say whether the outcome changed and why.",
        epilog="examples:\n"
        "  lez recheck 1-ABC-234 --zone Gent --date 2026-03-02 --outcome NOT_ALLOWED\n"
        "  lez recheck --file appeals.csv   (columns plate,country,zone,date,outcome and "
        "optionally reason,euro,snapshot_id,ruleset_revision)\n"
        "  lez batch reads.csv decisions.csv --zone Gent\n"
        "  lez recheck --file decisions.csv --zone Gent   (the output of 'lez batch' as it "
        "is: its\n    day column is the date; --zone, --snapshot and --ruleset fill the "
        "columns it lacks)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("plate", nargs="?", help="the plate as written")
    command.add_argument("--file", type=Path, default=None, help="CSV file of earlier decisions")
    command.add_argument("--zone", help="zone name or id (with --file: of rows without one)")
    command.add_argument("--date", type=_when_arg, help="day of the earlier decision, YYYY-MM-DD")
    command.add_argument("--country", type=_country_arg, default="BE", help="plate country [BE]")
    command.add_argument("--outcome", type=outcome_arg, help="outcome given then, e.g. NOT_ALLOWED")
    command.add_argument("--reason", type=reason_arg, default=None, help="reason given then")
    command.add_argument("--euro", default=None, help="euro norm code used then")
    command.add_argument(
        "--snapshot",
        default="",
        help="snapshot id of the earlier decision, as its answer printed it (an id the server "
        "cannot have served is an error)",
    )
    command.add_argument("--ruleset", default="", help="rule revision of the earlier decision")
    command.add_argument("--json", action="store_true", help="print the answer as JSON")
    _connection_options(command)


def _add_info(commands: Any) -> None:
    """`lez info`: what the server serves and what this client may do."""
    command = commands.add_parser(
        "info",
        help="what the server serves and what this client may do",
        description="Show the snapshot, rule revisions, zones, key id, and this client's "
        "organisation, roles, zones and limits.",
        epilog="example: lez info --server 127.0.0.1:50051",
    )
    command.add_argument("--json", action="store_true", help="print as JSON")
    _connection_options(command)


def parse_command_line(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments of `lez` (SystemExit with status 2 and one line on stderr if wrong)."""
    return build_parser().parse_command_line(argv)


def _setting(args: argparse.Namespace, name: str, env: str) -> str | None:
    value = getattr(args, name, None)
    if value is None:
        value = os.environ.get(env) or None
    return None if value is None else str(value)


def settings_from(args: argparse.Namespace) -> ClientSettings:
    """The client settings of the options given, else of the environment, else defaults."""
    servers = _setting(args, "server", "LEZ_SERVER") or DEFAULT_SERVER
    timeout_text = _setting(args, "timeout", "LEZ_TIMEOUT")
    try:
        timeout = float(timeout_text) if timeout_text else None
    except ValueError:
        raise errors.InvalidRequest("LEZ_TIMEOUT must be a number of seconds") from None
    paths = {
        name: (Path(v) if (v := _setting(args, name, env)) else None)
        for name, env in (
            ("ca", "LEZ_CA_CERT"),
            ("cert", "LEZ_CLIENT_CERT"),
            ("key", "LEZ_CLIENT_KEY"),
        )
    }
    overrides: dict[str, Any] = {**paths, "chunk_size": getattr(args, "chunk_size", None)}
    if timeout is not None:  # one deadline for a call, or for a whole batch
        overrides |= {"timeout_s": timeout, "batch_timeout_s": timeout}
    if connections := getattr(args, "connections", None):
        overrides["connections"] = connections
    return ClientSettings.resolve(servers, **overrides)
