"""`lez`: the command line of the LEZ access-decision service, for people.

    lez check 1-ABC-234 --zone Gent --date 2026-10-20
    lez batch reads.csv decisions.csv --zone Antwerpen
    lez recheck 1-ABC-234 --zone Gent --date 2026-03-02 --outcome NOT_ALLOWED
    lez info

Every error a person can meet (server down, unknown zone, bad date, missing file, no
permission, quota used up...) is one readable line on stderr and a non-zero exit status, never
a traceback (set LEZ_DEBUG=1 to see one). No plate appears in an error message; `lez check`
echoes back the plate the person typed, on their own terminal only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from clients import errors
from clients.batchfile import BatchFileError, read_batch, write_results
from clients.day_input import parse_when
from clients.decisions import CheckAnswer, RecheckAnswer, RecheckItem
from clients.enum_names import OUTCOME_NAMES, REASON_NAMES
from clients.result_columns import BatchSummary
from clients.settings import DEFAULT_SERVER, ClientSettings
from clients.sync import LezClient
from lez.api.v1 import access_pb2 as pb
from lez.days import from_day, parse_day

PROG: Final = "lez"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
PROGRESS_EVERY_S: Final = 0.1
BAR_WIDTH: Final = 30
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


# ---- argument parsing -----------------------------------------------------------------------


def _date_arg(text: str) -> dt.date:
    try:
        return from_day(parse_day(text))
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD, e.g. 2026-10-20") from None


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


def _outcome_arg(text: str) -> str:
    value = text.strip().upper().removeprefix("OUTCOME_")
    if value not in OUTCOME_NAMES[1:]:
        raise argparse.ArgumentTypeError("one of " + ", ".join(OUTCOME_NAMES[1:]))
    return value


def _reason_arg(text: str) -> str:
    value = text.strip().upper().removeprefix("REASON_")
    if value not in REASON_NAMES[1:]:
        raise argparse.ArgumentTypeError("a reason name such as EURO_BELOW_MINIMUM")
    return value


def _connection_options(p: argparse.ArgumentParser) -> None:
    """Connection options, accepted before or after the command (defaults resolved later)."""
    g = p.add_argument_group("connection")
    s = argparse.SUPPRESS
    g.add_argument(
        "--server",
        default=s,
        metavar="ADDR[,ADDR...]",
        help=f"server address(es) host:port; several are load-balanced round-robin "
        f"[env LEZ_SERVER; default {DEFAULT_SERVER}]",
    )
    g.add_argument("--ca", type=Path, default=s, help="CA certificate PEM (TLS) [LEZ_CA_CERT]")
    g.add_argument(
        "--cert", type=Path, default=s, help="client certificate PEM (mutual TLS) [LEZ_CLIENT_CERT]"
    )
    g.add_argument("--key", type=Path, default=s, help="client private key PEM [LEZ_CLIENT_KEY]")
    g.add_argument(
        "--timeout",
        type=_seconds,
        default=s,
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


class _Parser(argparse.ArgumentParser):
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


def build_parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description="Ask the LEZ access-decision service whether vehicles may enter a Belgian "
        "low-emission zone (Antwerpen, Gent, Brussels) on a day.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser(
        "check",
        help="one plate on one day in one zone",
        description="Ask about one plate on one day in one zone and print the answer: "
        "ALLOWED (with allowed-until), NOT_ALLOWED, UNKNOWN_PLATE, INSUFFICIENT_DATA, "
        "COMBINATION_MISMATCH or INVALID, with the reason and the data used.",
        epilog="example: lez check 1-ABC-234 --zone Gent --date 2026-10-20",
    )
    c.add_argument("plate", help="the plate as written, e.g. 1-ABC-234")
    c.add_argument("--zone", required=True, help="zone name or id (see 'lez info')")
    c.add_argument(
        "--date",
        type=_when_arg,
        default=None,
        help="day asked about, YYYY-MM-DD or an ISO 8601 timestamp [today in Brussels]",
    )
    c.add_argument("--country", type=_country_arg, default="BE", help="plate country [BE]")
    c.add_argument(
        "--first-registration",
        type=_date_arg,
        default=None,
        help="first-registration date to match, YYYY-MM-DD (public checker)",
    )
    c.add_argument("--ruleset", default=None, help="pin a rule revision [newest loaded]")
    c.add_argument("--json", action="store_true", help="print the answer as JSON")
    _connection_options(c)

    b = sub.add_parser(
        "batch",
        help="a CSV file of camera reads -> a CSV file of decisions",
        description="Send a CSV of camera reads (plate,country,day or plate,country,timestamp) "
        "for one zone and write the decisions, row for row, to OUT. Shows a progress bar on a "
        "terminal and a summary of outcomes at the end.",
        epilog="example: lez batch reads.csv decisions.csv --zone Antwerpen",
    )
    b.add_argument("input", type=Path, metavar="IN.csv", help="camera reads")
    b.add_argument("output", type=Path, metavar="OUT.csv", help="decisions (overwritten)")
    b.add_argument("--zone", required=True, help="zone name or id (see 'lez info')")
    b.add_argument("--ruleset", default=None, help="pin a rule revision [newest loaded]")
    b.add_argument(
        "--chunk-size", type=_positive_int, default=None, help="pairs per chunk [server limit]"
    )
    b.add_argument(
        "--connections",
        type=_positive_int,
        default=None,
        help="connections the batch is spread over [4]",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    _connection_options(b)

    r = sub.add_parser(
        "recheck",
        help="re-evaluate an earlier decision on today's data (appeals)",
        description="Re-evaluate an earlier decision (or a CSV file of them) on the current "
        "register snapshot and rules, and say whether the outcome changed and why.",
        epilog="examples:\n"
        "  lez recheck 1-ABC-234 --zone Gent --date 2026-03-02 --outcome NOT_ALLOWED\n"
        "  lez recheck --file appeals.csv   (columns plate,country,zone,date,outcome and "
        "optionally reason,euro,snapshot_id,ruleset_revision)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("plate", nargs="?", help="the plate as written")
    r.add_argument("--file", type=Path, default=None, help="CSV file of earlier decisions")
    r.add_argument("--zone", help="zone name or id")
    r.add_argument("--date", type=_when_arg, help="day of the earlier decision, YYYY-MM-DD")
    r.add_argument("--country", type=_country_arg, default="BE", help="plate country [BE]")
    r.add_argument("--outcome", type=_outcome_arg, help="outcome given then, e.g. NOT_ALLOWED")
    r.add_argument("--reason", type=_reason_arg, default=None, help="reason given then")
    r.add_argument("--euro", default=None, help="euro norm code used then")
    r.add_argument("--snapshot", default="", help="snapshot id of the earlier decision")
    r.add_argument("--ruleset", default="", help="rule revision of the earlier decision")
    r.add_argument("--json", action="store_true", help="print the answer as JSON")
    _connection_options(r)

    i = sub.add_parser(
        "info",
        help="what the server serves and what this client may do",
        description="Show the snapshot, rule revisions, zones, key id, and this client's "
        "organisation, roles, zones and limits.",
        epilog="example: lez info --server 127.0.0.1:50051",
    )
    i.add_argument("--json", action="store_true", help="print as JSON")
    _connection_options(i)
    return p


def parse_command_line(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments of `lez` (SystemExit with status 2 and one line on stderr if wrong)."""
    return build_parser().parse_command_line(argv)


def _setting(args: argparse.Namespace, name: str, env: str) -> str | None:
    value = getattr(args, name, None)
    if value is None:
        value = os.environ.get(env) or None
    return None if value is None else str(value)


def settings_from(args: argparse.Namespace) -> ClientSettings:
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


# ---- commands -------------------------------------------------------------------------------


def _date_str(value: dt.date | None) -> str:
    return value.isoformat() if value else "-"


def print_decision(plate: str, country: str, d: CheckAnswer, out: TextIO) -> None:
    reason = f" ({d.reason})" if d.reason else ""
    out.write(f"{plate} ({country}) in {d.zone} on {_date_str(d.date)}: {d.outcome}{reason}\n")
    if d.outcome == "ALLOWED":
        until = "no end date under this revision" if d.open_ended else _date_str(d.allowed_until)
        out.write(f"  allowed until: {until}\n")
    if d.euro:
        derived = f" (derived: {', '.join(sorted(d.derived))})" if d.derived else ""
        out.write(f"  euro norm:     {d.euro}{derived}\n")
    t = d.technical
    if t is not None and any(
        v is not None for v in (t.category, t.fuel, t.first_registration, t.max_mass_kg)
    ):
        parts = [
            f"category {t.category or '?'}",
            f"fuel {t.fuel or '?'}",
            f"first registration {_date_str(t.first_registration)}",
        ]
        if t.max_mass_kg:
            parts.append(f"max mass {t.max_mass_kg} kg")
        if t.co2_g_km:
            parts.append(f"CO2 {t.co2_g_km} g/km")
        if t.power_kw:
            parts.append(f"{t.power_kw} kW")
        out.write(f"  vehicle data:  {', '.join(parts)}\n")
    out.write(f"  snapshot {d.snapshot_id}, rule revision {d.revision}\n")


def _decision_json(d: CheckAnswer) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, frozenset):
            return sorted(v)
        return v

    out = {k: conv(getattr(d, k)) for k in d.__dataclass_fields__ if k != "technical"}
    if d.technical is not None:
        out["technical"] = {
            k: conv(getattr(d.technical, k)) for k in d.technical.__dataclass_fields__
        }
    return out


def cmd_check(args: argparse.Namespace, client: LezClient, out: TextIO) -> int:
    d = client.check(
        args.plate,
        zone=args.zone,
        day=args.date,
        country=args.country,
        first_registration=args.first_registration,
        ruleset=args.ruleset,
    )
    if args.json:
        out.write(json.dumps(_decision_json(d), indent=2) + "\n")
    else:
        print_decision(args.plate, args.country, d, out)
    return EXIT_OK


class ProgressBar:
    """A one-line progress bar on a terminal (stderr); silent otherwise."""

    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = enabled
        self.done = 0
        self.started = time.perf_counter()
        self.shown = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.shown >= PROGRESS_EVERY_S or self.done >= self.total):
            self.shown = now
            share = min(self.done / self.total, 1.0)
            filled = int(share * BAR_WIDTH)
            rate = self.done / max(now - self.started, 1e-9)
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:6.1%} "
                f"{self.done:,}/{self.total:,} pairs, {rate:,.0f}/s "
            )
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def summary_table(summary: BatchSummary) -> list[str]:
    """A small table of outcomes with counts and shares."""
    lines = [f"  {'outcome':<22}{'pairs':>12}{'share':>9}"]
    total = max(summary.pairs, 1)
    for name in OUTCOME_NAMES[1:]:
        count = summary.outcomes.get(name, 0)
        if count:
            lines.append(f"  {name:<22}{count:>12,}{count / total:>9.1%}")
    lines.append(f"  {'total':<22}{summary.pairs:>12,}{1:>9.1%}")
    return lines


def cmd_batch(args: argparse.Namespace, client: LezClient, out: TextIO, err: TextIO) -> int:
    if args.output.resolve() == args.input.resolve():
        raise BatchFileError("OUT.csv must differ from IN.csv (it is overwritten)")
    t0 = time.perf_counter()
    batch = read_batch(args.input)
    t_read = time.perf_counter() - t0
    info = client.server_info()
    euro_codes = {
        int(e.id): e.code for lst in info.code_lists if lst.name == "euro" for e in lst.entries
    }
    bar = ProgressBar(len(batch), err, enabled=err.isatty() and not args.no_progress)
    try:
        result = client.check_batch(batch.rows, zone=args.zone, ruleset=args.ruleset, progress=bar)
    finally:
        bar.finish()
    t1 = time.perf_counter()
    write_results(args.output, batch, result, euro_codes)
    t_write = time.perf_counter() - t1
    s = result.summary
    if args.json:
        out.write(
            json.dumps(
                {
                    "pairs": s.pairs,
                    "chunks": s.chunks,
                    "outcomes": dict(s.outcomes),
                    "seconds": round(s.seconds, 4),
                    "pairs_per_second": round(s.pairs_per_second),
                    "streams": s.streams,
                    "snapshot_ids": list(s.snapshot_ids),
                    "ruleset_revision": s.revision,
                    "audit_ids": list(s.audit_ids),
                    "unreadable_days": batch.bad_days,
                    "output": str(args.output),
                },
                indent=2,
            )
            + "\n"
        )
        return EXIT_OK
    out.write(
        f"{s.pairs:,} pairs for zone {args.zone} decided in {s.seconds:.2f} s "
        f"({s.pairs_per_second:,.0f} pairs/s over {s.streams} connection(s)); "
        f"read {t_read:.2f} s, write {t_write:.2f} s\n"
    )
    out.write("\n".join(summary_table(s)) + "\n")
    if batch.bad_days:
        out.write(
            f"  {batch.bad_days:,} row(s) had an unreadable {batch.day_column} "
            "(answered INVALID / INVALID_DAY)\n"
        )
    out.write(
        f"snapshot {', '.join(s.snapshot_ids) or '-'}, rule revision {s.revision or '-'}; "
        f"audit id(s) {', '.join(a[:16] for a in s.audit_ids) or '-'}\n"
    )
    out.write(f"wrote {args.output}\n")
    return EXIT_OK


RECHECK_COLUMNS: Final = ("plate", "country", "zone", "date", "outcome")


def _recheck_items(args: argparse.Namespace) -> list[RecheckItem]:
    if args.file is None:
        missing = [n for n in ("plate", "zone", "date", "outcome") if not getattr(args, n)]
        if missing:
            raise errors.InvalidRequest(
                "recheck needs PLATE, --zone, --date and --outcome (or --file); missing: "
                + ", ".join(missing)
            )
        return [
            RecheckItem(
                plate=args.plate,
                country=args.country,
                zone=args.zone,
                date=args.date,
                outcome=args.outcome,
                reason=args.reason,
                euro=args.euro,
                snapshot_id=args.snapshot,
                revision=args.ruleset,
            )
        ]
    try:
        with open(args.file, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BatchFileError(errors.file_problem(args.file, exc)) from None
    if not rows:
        raise BatchFileError(f"{args.file}: no rows after the header")
    lacking = [c for c in RECHECK_COLUMNS if c not in rows[0]]
    if lacking:
        raise BatchFileError(f"{args.file}: missing column(s) {', '.join(lacking)}")
    items = []
    for n, row in enumerate(rows, start=2):
        try:
            outcome = _outcome_arg(row["outcome"])
            reason = _reason_arg(row["reason"]) if row.get("reason") else None
        except argparse.ArgumentTypeError as exc:
            raise BatchFileError(f"{args.file} line {n}: {exc}") from None
        items.append(
            RecheckItem(
                plate=row["plate"],
                country=(row.get("country") or "BE").strip().upper(),
                zone=row["zone"],
                date=row["date"],
                outcome=outcome,
                reason=reason,
                euro=row.get("euro") or None,
                snapshot_id=row.get("snapshot_id") or "",
                revision=row.get("ruleset_revision") or "",
            )
        )
    return items


def cmd_recheck(args: argparse.Namespace, client: LezClient, out: TextIO) -> int:
    items = _recheck_items(args)
    answer: RecheckAnswer = client.recheck(items)
    if args.json:
        out.write(
            json.dumps(
                {
                    "snapshot_id": answer.snapshot_id,
                    "ruleset_revision": answer.revision,
                    "mutation_watermark": answer.mutation_watermark,
                    "results": [
                        {
                            "index": r.index,
                            "previous_outcome": r.previous_outcome,
                            "previous_reason": r.previous_reason,
                            "current": _decision_json(r.current),
                            "outcome_changed": r.outcome_changed,
                            "changes": list(r.changes),
                        }
                        for r in answer.results
                    ],
                },
                indent=2,
            )
            + "\n"
        )
        return EXIT_OK
    for r in answer.results:
        label = items[r.index].plate if args.file is None else f"row {r.index + 1}"
        before = r.previous_outcome + (f" ({r.previous_reason})" if r.previous_reason else "")
        now = r.current.outcome + (f" ({r.current.reason})" if r.current.reason else "")
        verdict = "CHANGED" if r.outcome_changed else "unchanged"
        changes = ", ".join(r.changes) or "nothing relevant"
        out.write(f"{label}: then {before} -> now {now}: {verdict}; what changed: {changes}\n")
    out.write(
        f"current snapshot {answer.snapshot_id}, rule revision {answer.revision}, "
        f"last mutation {answer.mutation_watermark or '-'}\n"
    )
    return EXIT_OK


def cmd_info(args: argparse.Namespace, client: LezClient, out: TextIO) -> int:
    info = client.server_info()
    if args.json:
        from google.protobuf.json_format import MessageToDict

        out.write(json.dumps(MessageToDict(info), indent=2) + "\n")
        return EXIT_OK
    c = info.client
    roles = ", ".join(pb.Role.Name(r).removeprefix("ROLE_").lower() for r in c.roles) or "none"

    def limit(v: int) -> str:
        return f"{v:,}" if v else "unlimited"

    lines = [
        f"server {info.server_version} at {', '.join(client.settings.servers)}"
        + (f", worker {info.worker + 1} of {info.workers} answered" if info.workers > 1 else ""),
        f"snapshot      {info.snapshot_id} (#{info.snapshot_seq}), extract of "
        f"{info.source_date}, built {info.built_at}",
        f"last mutation {info.mutation_watermark or '-'}",
        f"key id        {info.key_id}",
        f"rules         {info.ruleset_revision} (loaded: {', '.join(info.ruleset_revisions)})",
        "zones         "
        + ", ".join(f"{z.name} (id {z.id}, {z.region.lower()})" for z in info.zones),
        f"this client   {c.organisation}; roles {roles}; zones {', '.join(c.zones) or 'all'}",
        f"limits        calls/min {limit(c.calls_per_minute)}, pairs/day "
        f"{limit(c.pairs_per_day)}, pairs/chunk {c.max_chunk_pairs:,}, "
        f"recheck items {c.max_recheck_items:,}, message {c.max_message_bytes / 2**20:.0f} MiB",
    ]
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


# ---- errors -> one readable line ------------------------------------------------------------


def describe(exc: BaseException, settings: ClientSettings | None) -> str:
    """The message a person sees for an error, with what to do about it."""
    where = ", ".join(settings.servers) if settings else DEFAULT_SERVER
    if isinstance(exc, errors.ServerUnavailable):
        return (
            f"no LEZ server answers at {where} ({exc.message}); is it running? "
            "(start one with 'lez-server serve', or give --server HOST:PORT)"
        )
    if isinstance(exc, errors.StoreNotReady):
        return f"the server at {where} has no register loaded yet; try again in a moment"
    if isinstance(exc, errors.DeadlineExceeded):
        return f"{exc.message}; give more time with --timeout SECONDS"
    if isinstance(exc, errors.RateLimited):
        wait = f" (retry in about {exc.retry_after_s:.0f} s)" if exc.retry_after_s else ""
        return f"quota used up: {exc.message}{wait}"
    if isinstance(exc, errors.UnknownZone):
        return f"{exc.message} (see 'lez info')"
    if isinstance(exc, errors.PermissionDenied):
        return f"not allowed: {exc.message}"
    if isinstance(exc, errors.Unauthenticated):
        return (
            f"the server did not accept this client: {exc.message} "
            "(check --ca/--cert/--key and the server's clients file)"
        )
    if isinstance(exc, errors.InternalError):
        return f"the server failed: {exc.message}"
    if isinstance(exc, errors.LezClientError):
        return exc.message
    if isinstance(exc, BatchFileError):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}); set LEZ_DEBUG=1 for details"


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = parse_command_line(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    settings: ClientSettings | None = None
    commands: dict[str, Callable[..., int]] = {
        "check": lambda a, c: cmd_check(a, c, out),
        "batch": lambda a, c: cmd_batch(a, c, out, err),
        "recheck": lambda a, c: cmd_recheck(a, c, out),
        "info": lambda a, c: cmd_info(a, c, out),
    }
    try:
        settings = settings_from(args)
        with LezClient(settings=settings) as client:
            return commands[args.command](args, client)
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("LEZ_DEBUG"):
            raise
        err.write(f"{PROG} {args.command}: error: {describe(exc, settings)}\n")
        usage = isinstance(exc, BatchFileError | errors.InvalidRequest)
        return EXIT_USAGE if usage else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
