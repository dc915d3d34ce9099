"""`lez-div`: the local DIV change-feed stand-in's command line (development and tests only).

    lez-div certs --out DIR                               development CA, server and client pairs
    lez-div generate --extract PATH --out DIR --days N    day files continuing a register
    lez-div serve --feed DIR --certs DIR [--port P]       serve them over mutual TLS

The feed's shape is docs/div-feed.md; the stand-in-only options (faults) are in its last
section. User errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Final

from lez.errors import LezError
from lez.version import version_line

CLIENT: Final = "client"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD") from None


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError("expected a port from 0 to 65535")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lez-div",
        description="Local stand-in for the DIV change feed (/movementIndications), "
        "docs/div-feed.md. Development and tests only.",
    )
    parser.add_argument("--version", action="version", version=version_line("lez-div"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    certs = sub.add_parser(
        "certs",
        help="write development certificates",
        description="Write ca.pem/ca.key, server.pem/server.key (localhost, 127.0.0.1, ::1) and "
        "client.pem/client.key into DIR; private keys get mode 0600.",
    )
    certs.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write")
    _generate_options(
        sub.add_parser(
            "generate",
            help="write day files that continue a register",
            description="Read a full extract (docs/extract-format.md) and write "
            "DIR/days/<date>.jsonl (one rowDetails item a line) and DIR/manifest.json. "
            "Same inputs, same bytes.",
        )
    )
    _serve_options(
        sub.add_parser(
            "serve",
            help="serve a feed directory over HTTPS with mutual TLS",
            description="Serve the generated days on 127.0.0.1 as docs/div-feed.md describes; "
            "the client must present a certificate issued by DIR/ca.pem. Stops on SIGTERM or "
            "Ctrl-C.",
        )
    )
    return parser


def _generate_options(gen: argparse.ArgumentParser) -> None:
    from div_standin.generator import MIN_PER_DAY

    gen.add_argument(
        "--extract", type=Path, required=True, metavar="PATH", help="extract .csv or .csv.gz"
    )
    gen.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="feed directory (replaced)"
    )
    gen.add_argument("--days", type=int, required=True, metavar="N", help="days to generate")
    gen.add_argument(
        "--start",
        type=_date,
        metavar="DATE",
        help="first day (default: the day after the extract's date, its newest valid_from, "
        "which is the first day `lez-loader sync` asks for when the build was given no "
        "--source-date)",
    )
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    gen.add_argument(
        "--per-day",
        type=int,
        metavar="N",
        help=f"transactions a day (default: 50,000 per 8,000,000 plates, at least {MIN_PER_DAY})",
    )
    gen.add_argument(
        "--bad-per-day",
        type=int,
        default=0,
        metavar="N",
        help="planted bad transactions a day, in turn: malformed detail, unknown code, bad plate "
        "(default 0; listed in the manifest)",
    )


def _serve_options(serve: argparse.ArgumentParser) -> None:
    from div_standin.faults import DEFAULT_DELAY, KINDS

    serve.add_argument(
        "--feed", type=Path, required=True, metavar="DIR", help="from lez-div generate"
    )
    serve.add_argument(
        "--certs", type=Path, required=True, metavar="DIR", help="from lez-div certs"
    )
    serve.add_argument(
        "--port", type=_port, default=0, metavar="P", help="port (default 0: a free one)"
    )
    serve.add_argument(
        "--port-file", type=Path, metavar="F", help="write the port here once accepting connections"
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:COUNT]",
        help=f"arm a fault for COUNT requests (default 1, or 'always'); KIND is one of "
        f"{', '.join(KINDS)} (repeatable; see docs/div-feed.md)",
    )
    serve.add_argument(
        "--fault-delay",
        type=float,
        default=DEFAULT_DELAY,
        metavar="SECONDS",
        help=f"how long a 'delay' fault waits (default {DEFAULT_DELAY})",
    )


def _certs(args: argparse.Namespace) -> int:
    from lez.certs import write_dev_set

    written = write_dev_set(
        args.out, server_cn="lez-div", clients=(CLIENT,), ca_cn="LEZ development DIV stand-in CA"
    )
    print(f"lez-div: wrote {len(written)} files into {args.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from div_standin.generator import generate
    from lez.progress import StageProgress

    result = generate(
        args.extract,
        args.out,
        days=args.days,
        start=args.start,
        seed=args.seed,
        per_day=args.per_day,
        bad_per_day=args.bad_per_day,
        progress=StageProgress(),
    )
    total = sum(d.transactions for d in result.days)
    slowest = max(result.day_seconds)
    print(
        f"lez-div: {len(result.days)} days from {result.days[0].date} ({total:,} transactions, "
        f"{result.per_day:,} a day on {result.plates:,} plates) in {args.out}; extract read in "
        f"{result.read_seconds:.1f} s, slowest day {slowest:.2f} s"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from div_standin.faults import parse_option
    from div_standin.server import serve

    faults = [parse_option(text, args.fault_delay) for text in args.fault]
    serve(args.feed, args.certs, port=args.port, port_file=args.port_file, faults=faults)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"certs": _certs, "generate": _generate, "serve": _serve}
    try:
        return commands[args.command](args)
    except (LezError, OSError) as exc:
        print(f"lez-div {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
