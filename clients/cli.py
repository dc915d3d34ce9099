"""`lez`: the command line of the LEZ access-decision service, for people.

    lez check 1-ABC-234 --zone Gent --date 2026-10-20
    lez batch reads.csv decisions.csv --zone Antwerpen [--as-of 2028-01-01]
    lez campaign --zone Brussels --date 2028-01-01 --nis 21004,21009 letters.csv [--plot F.png]
    lez recheck 1-ABC-234 --zone Gent --date 2026-03-02 --outcome NOT_ALLOWED
    lez info

Every error a person can meet (server down, unknown zone, bad date, missing file, no
permission, quota used up...) is one readable line on stderr and a non-zero exit status, never
a traceback (set LEZ_DEBUG=1 to see one): as `--help` says, 0 answered, 1 the call failed
(server down or failing, quota, permission), 2 bad usage or input (options, files, dates, an
unknown zone, rule revision or snapshot id), 130 interrupted. No plate appears in an error
message; `lez check` echoes back the plate the person typed, on their own terminal only.

This module runs the commands; their options are `clients.cli_parser`, what they print
`clients.cli_output`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from clients import errors
from clients.batchfile import BatchFileError, read_batch, write_results
from clients.campaign_output import (
    PlotUnavailable,
    campaign_json,
    campaign_lines,
    code_lists,
    plot_campaign,
    write_campaign,
)
from clients.cli_output import (
    answer_json,
    batch_json,
    batch_lines,
    error_line,
    info_lines,
    note_counts,
    notes_lines,
    print_answer,
    recheck_json,
    recheck_lines,
)
from clients.cli_parser import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    parse_command_line,
    settings_from,
)
from clients.decisions import RecheckItem
from clients.recheck_file import RecheckDefaults, read_recheck_file
from clients.settings import ClientSettings
from clients.sync import LezClient
from lez.api.v1 import access_pb2 as pb
from lez.progress import ItemProgress

RECHECK_NEEDS: tuple[str, ...] = ("plate", "zone", "date", "outcome")
"""What `lez recheck` needs without --file."""
BAD_INPUT = (BatchFileError, errors.InvalidRequest, errors.UnknownRuleset, PlotUnavailable)
"""Errors that are the input's, exit status 2 (`--help`: "2 bad usage or input"): a file or a
value given (an unknown zone, rule revision or snapshot id, a bad date) to change and retry;
every other error is a call that failed (1)."""


def _write_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def cmd_check(args: argparse.Namespace, client: LezClient, out: TextIO) -> int:
    answer = client.check(
        args.plate,
        zone=args.zone,
        day=args.date,
        instant=args.instant,
        country=args.country,
        first_registration=args.first_registration,
        ruleset=args.ruleset,
    )
    if args.json:
        _write_json(out, answer_json(answer))
    else:
        print_answer(args.plate, args.country, answer, out)
    return EXIT_OK


def _euro_codes(info: pb.ServerInfoResponse) -> dict[int, str]:
    """The server's euro code list: id (as in batch answers) -> DIV code."""
    return {
        int(e.id): e.code
        for codes in info.code_lists
        if codes.name == "euro"
        for e in codes.entries
    }


def cmd_batch(args: argparse.Namespace, client: LezClient, out: TextIO, err: TextIO) -> int:
    if args.output.resolve() == args.input.resolve():
        raise BatchFileError("OUT.csv must differ from IN.csv (it is overwritten)")
    started = time.perf_counter()
    batch = read_batch(args.input)
    read_s = time.perf_counter() - started
    euro_codes = _euro_codes(client.server_info())
    bar = ItemProgress(
        "pairs", err, enabled=err.isatty() and not args.no_progress, total=len(batch)
    )
    try:
        result = client.check_batch(
            batch.rows, zone=args.zone, ruleset=args.ruleset, as_of=args.as_of, progress=bar
        )
    finally:
        bar.finish()
    started = time.perf_counter()
    write_results(args.output, batch, result, euro_codes)
    write_s = time.perf_counter() - started
    if args.json:
        notes = {"notes": note_counts(result.notes)}
        _write_json(out, batch_json(result.summary, batch, args.output) | notes)
        return EXIT_OK
    lines = batch_lines(result.summary, batch, args.zone, read_s, write_s)
    lines += notes_lines(result.notes)
    out.write("\n".join([*lines, f"wrote {args.output}"]) + "\n")
    return EXIT_OK


def cmd_campaign(args: argparse.Namespace, client: LezClient, out: TextIO, err: TextIO) -> int:
    lists = code_lists(client.server_info())
    count = ItemProgress(
        "vehicles", err, enabled=err.isatty() and not args.no_progress, verb="received"
    )
    try:
        result = client.losing_access(
            args.zone,
            args.date,
            args.nis,
            reference_date=args.reference_date,
            ruleset=args.ruleset,
            progress=count,
        )
    finally:
        count.finish()
    write_campaign(args.output, result.rows, lists)
    if args.plot is not None:
        title = f"Vehicles losing access to {args.zone} by {args.date.isoformat()}, by fuel"
        plot_campaign(args.plot, result.rows, lists, title)
    if args.json:
        _write_json(out, campaign_json(result, args.output, args.plot))
        return EXIT_OK
    lines = campaign_lines(result, args.zone, args.date, args.output)
    if args.plot is not None:
        lines.append(f"wrote {args.plot}")
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def _recheck_items(args: argparse.Namespace) -> list[RecheckItem]:
    if args.file is not None:  # --zone, --snapshot, --ruleset: for rows without the column
        defaults = RecheckDefaults(args.zone, args.snapshot, args.ruleset)
        return read_recheck_file(args.file, defaults)
    missing = [name for name in RECHECK_NEEDS if not getattr(args, name)]
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


def cmd_recheck(args: argparse.Namespace, client: LezClient, out: TextIO) -> int:
    items = _recheck_items(args)
    answer = client.recheck(items)
    if args.json:
        _write_json(out, recheck_json(answer))
    else:
        out.write("\n".join(recheck_lines(answer, items, from_file=args.file is not None)) + "\n")
    return EXIT_OK


def cmd_info(args: argparse.Namespace, client: LezClient, out: TextIO) -> int:
    info = client.server_info()
    if args.json:
        from google.protobuf.json_format import MessageToDict

        _write_json(out, MessageToDict(info))
    else:
        out.write("\n".join(info_lines(info, client.settings.servers)) + "\n")
    return EXIT_OK


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
    commands: dict[str, Callable[[argparse.Namespace, LezClient], int]] = {
        "check": lambda a, c: cmd_check(a, c, out),
        "batch": lambda a, c: cmd_batch(a, c, out, err),
        "campaign": lambda a, c: cmd_campaign(a, c, out, err),
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
        err.write(f"{PROG} {args.command}: error: {error_line(exc, settings)}\n")
        return EXIT_USAGE if isinstance(exc, BAD_INPUT) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
