"""`lez-server`: serve, make development certificates, verify and search audit logs.

    lez-server serve [--address H:P] [--workers N] [--store-root DIR] [--key-file F] ...
    lez-server certs --out DIR [--client NAME ...] [--host NAME ...]
    lez-server verify-audit FILE_OR_DIR [...] [--audit-key-file F] [--checkpoints DIR]
    lez-server audit find --plate P [--country BE] [--zone Z] [--from DAY] [--to DAY]
                          --key-file HMAC_KEY --audit-dir DIR [--json]
    lez-server audit keygen --out FILE
    lez-server health [--address H:P] [--tls-ca F --tls-cert F --tls-key F] [--live]

Every `serve` option can also be given as a `LEZ_*` environment variable (see `--help`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lez.errors import LezError
from lez.keys import load_key
from lez.version import version_line
from server import audit_find, certs, health_probe
from server.audit_keys import AuditKeys, generate_audit_key_file, load_audit_keys
from server.audit_verify import audit_files, verify_file
from server.config import ServerConfig, add_serve_arguments, build_config
from server.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lez-server",
        description="LEZ access-decision gRPC server (Belgian low-emission zones).",
    )
    parser.add_argument("--version", action="version", version=version_line("lez-server"))
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
        help="check audit log files against their keyed chain and signed checkpoints",
        description=(
            "Check each audit file's keyed hash chain, its key logs and its signed "
            "checkpoints: reports an edited or flipped record, a removed middle record, records "
            "cut off the end, an emptied or deleted file, a re-chained edit and a forged "
            "checkpoint. Exit 0 when every file is intact, 1 otherwise (docs/audit.md)."
        ),
    )
    v.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="audit-w<N>.jsonl files, or audit directories (every file, deleted ones included)",
    )
    v.add_argument(
        "--audit-key-file",
        type=Path,
        default=None,
        help="the audit secret the logs were written with [env LEZ_AUDIT_KEY_FILE; default "
        "var/keys/audit.key when present]",
    )
    v.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="checkpoint directory, e.g. the copy taken off the machine [default: checkpoints/ "
        "beside each audit file]",
    )
    a = sub.add_parser("audit", help="search the audit log; make an audit key")
    audit_sub = a.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")
    f = audit_sub.add_parser(
        "find",
        help="who consulted a plate: the audit records that hold its key",
        description=(
            "Key the plate with the plate HMAC key and list every recorded call that consulted "
            "it (organisation, identity, roles, purpose, RPC, zone, time, outcome), from the "
            "audit files and their key logs. The plate is never printed."
        ),
    )
    f.add_argument("--plate", required=True, help="the plate, as written on it")
    f.add_argument("--country", default="BE", help="two-letter country (default BE)")
    f.add_argument("--zone", default=None, help="only calls about this zone (name)")
    f.add_argument("--from", dest="since", default=None, help="first day, YYYY-MM-DD (UTC)")
    f.add_argument("--to", dest="until", default=None, help="last day, YYYY-MM-DD (UTC)")
    f.add_argument("--key-file", type=Path, required=True, help="the plate HMAC key file")
    f.add_argument("--audit-dir", type=Path, required=True, help="the audit directory")
    f.add_argument("--json", action="store_true", help="one JSON object per line")
    k = audit_sub.add_parser(
        "keygen",
        help="write a new audit secret (mode 0600)",
        description="Write a new audit secret; give it to the server with --audit-key-file.",
    )
    k.add_argument("--out", type=Path, required=True, help="the key file to create")
    health_probe.add_health_parser(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"lez-server: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    logging.getLogger("lez.server").info("config %s", json.dumps(config.redacted()))
    if config.workers > 1:
        from server.workers import Supervisor

        try:
            return Supervisor(config).run()
        except LezError as exc:
            print(f"lez-server: {exc.message}", file=sys.stderr)
            return 1
    from server.app import serve_forever

    try:
        asyncio.run(serve_forever(config))
    except LezError as exc:
        print(f"lez-server: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _audit_keys(given: Path | None) -> AuditKeys | None:
    """The audit keys for verification: the option, LEZ_AUDIT_KEY_FILE, or the server's default
    file when it exists (None: none known; keyed records are then reported unverifiable)."""
    path = given or (
        Path(os.environ["LEZ_AUDIT_KEY_FILE"]) if "LEZ_AUDIT_KEY_FILE" in os.environ else None
    )
    if path is None:
        default = ServerConfig().audit_key_path
        if not default.exists():
            return None
        path = default
    return load_audit_keys(path)


def _verify(args: argparse.Namespace) -> int:
    try:
        keys = _audit_keys(args.audit_key_file)
    except LezError as exc:
        print(f"lez-server verify-audit: {exc.message}", file=sys.stderr)
        return 2
    bad = 0
    for path in audit_files(args.files, args.checkpoints):
        try:
            verdict = verify_file(path, keys, args.checkpoints)
        except OSError as exc:
            print(f"{path}: {exc.strerror}")
            bad += 1
            continue
        for problem in verdict.problems:
            print(problem)
        for note in verdict.notes:
            print(f"note: {note}")
        if verdict.problems:
            bad += 1
        else:
            print(f"{path}: intact ({verdict.records} records)")
    return 1 if bad else 0


def _day(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} wants a day as YYYY-MM-DD") from None


def _find(args: argparse.Namespace) -> int:
    try:
        since, until = _day(args.since, "--from"), _day(args.until, "--to")
        if not args.audit_dir.is_dir():
            raise ValueError(f"--audit-dir {args.audit_dir}: no such directory")
        key = audit_find.plate_key(load_key(args.key_file), args.plate, args.country)
        found = audit_find.find_consultations(
            args.audit_dir, key, zone=args.zone, since=since, until=until
        )
    except LezError as exc:
        print(f"lez-server audit find: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"lez-server audit find: {exc}", file=sys.stderr)
        return 2
    if args.json:
        if found:
            print(audit_find.format_json_lines(found))
        return 0
    print(audit_find.format_table(found))
    print(f"{len(found)} consultation(s) of this plate")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    try:
        key_id = generate_audit_key_file(args.out)
    except LezError as exc:
        print(f"lez-server audit keygen: {exc.message}", file=sys.stderr)
        return 1
    print(f"wrote audit key {key_id} to {args.out}; keep a copy off this machine")
    return 0


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
    if args.command == "health":
        return health_probe.run(args)
    if args.command == "audit":
        return _find(args) if args.audit_command == "find" else _keygen(args)
    return _verify(args)


if __name__ == "__main__":
    sys.exit(main())
