"""`lez-server`: serve, make development certificates, verify audit logs.

    lez-server serve [--address H:P] [--workers N] [--store-root DIR] [--key-file F] ...
    lez-server certs --out DIR [--client NAME ...] [--host NAME ...]
    lez-server verify-audit FILE [FILE ...]

Every `serve` option can also be given as a `LEZ_*` environment variable (see `--help`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lez.errors import LezError
from server import audit, certs
from server.config import add_serve_arguments, build_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lez-server",
        description="LEZ access-decision gRPC server (Belgian low-emission zones).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve AccessService (mutual TLS, or plain TCP on loopback for development)",
        description=(
            "Serve AccessService with health and reflection. Without --tls-* options the "
            "server listens in plain TCP and only on loopback (development). Options fall back "
            "to LEZ_* environment variables, then to the defaults shown."
        ),
    )
    add_serve_arguments(serve)
    c = sub.add_parser(
        "certs",
        help="write a development CA, server and client certificates",
        description="Write ca.pem, server.pem/.key and <client>.pem/.key into DIR.",
    )
    c.add_argument("--out", type=Path, required=True, help="output directory")
    c.add_argument(
        "--client",
        action="append",
        default=None,
        help=f"client certificate CN (repeatable; default {', '.join(certs.DEFAULT_CLIENTS)})",
    )
    c.add_argument("--host", action="append", default=[], help="extra server host name or IP")
    v = sub.add_parser(
        "verify-audit",
        help="check the hash chain of audit log files",
        description="Exit 0 when every file's chain and key sidecars are intact, 1 otherwise.",
    )
    v.add_argument("files", nargs="+", type=Path, help="audit-w<N>.jsonl files")
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"lez-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("lez.server").info("config %s", json.dumps(config.redacted()))
    if config.workers > 1:
        from server.workers import Supervisor

        return Supervisor(config).run()
    from server.app import serve_forever

    try:
        asyncio.run(serve_forever(config))
    except LezError as exc:
        print(f"lez-server: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _verify(files: Sequence[Path]) -> int:
    bad = 0
    for path in files:
        try:
            problems = audit.verify(path)
        except OSError as exc:
            problems = [f"{path}: {exc.strerror}"]
        for p in problems:
            print(p)
        if problems:
            bad += 1
        else:
            print(f"{path}: intact")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "certs":
        written = certs.write_dev_certs(
            args.out, clients=args.client or certs.DEFAULT_CLIENTS, hosts=args.host
        )
        for p in written:
            print(p)
        return 0
    return _verify(args.files)


if __name__ == "__main__":
    sys.exit(main())
