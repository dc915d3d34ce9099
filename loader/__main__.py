"""`lez-loader`: the operator's command line for keys, registers, stores and registrations."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Final

from lez.errors import LezError
from lez.progress import StageProgress
from lez.store.compaction import DEFAULT_COMPACTION
from lez.version import version_line
from loader.config import (
    DEFAULT_MAX_REJECT_SHARE,
    DEFAULT_RETENTION_DAYS,
    LoaderConfig,
    env_path,
)

DEFAULT_RULES_DIR: Final = "rules"

EPILOG = """\
examples:
  lez-loader keygen --key var/keys/hmac.key
  lez-loader synth --plates 300000 --seed 7 --out var/register
  lez-loader build var/register/extract.csv --key var/keys/hmac.key --out var/store
  lez-loader registrations regs.csv --key var/keys/hmac.key --store var/store
  lez-loader sync --store var/store --key var/keys/hmac.key --div-url https://localhost:8443 \\
      --div-ca certs/ca.pem --div-cert certs/client.pem --div-key certs/client.key
  lez-loader reconcile extract.csv --store var/store --key var/keys/hmac.key --report diff.json
  lez-loader compact --store var/store
  lez-loader info --store var/store

Environment: LEZ_KEY_FILE, LEZ_STORE, LEZ_RULES set the defaults of --key, --out/--store, --rules;
LEZ_DIV_URL, LEZ_DIV_CA, LEZ_DIV_CERT, LEZ_DIV_KEY those of the sync's --div-* options.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lez-loader",
        description="Compile the DIV register subset and the cities' registrations into the "
        "pseudonymised LMDB store the LEZ server reads.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=version_line("lez-loader"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kg = sub.add_parser("keygen", help="create a new HMAC key file (mode 0600)")
    _key_arg(kg, "where to write the key (refuses to overwrite)")

    sy = sub.add_parser("synth", help="generate a synthetic but realistic Belgian register")
    sy.add_argument("--plates", type=int, required=True, help="number of plates")
    sy.add_argument("--seed", type=int, default=1, help="random seed (same seed, same file)")
    sy.add_argument("--out", type=Path, required=True, help="output directory")
    sy.add_argument("--source-date", default="2026-11-01", help="extract date YYYY-MM-DD")
    sy.add_argument("--gzip", action="store_true", help="write extract.csv.gz")

    bd = sub.add_parser("build", help="build a store from a DIV extract and publish it")
    bd.add_argument(
        "extract", type=Path, help="extract file (.csv or .csv.gz), see docs/extract-format.md"
    )
    _key_arg(bd, "HMAC key file")
    _store_arg(bd, "--out")
    bd.add_argument(
        "--rules",
        type=Path,
        default=None,
        help="directory of rule revisions compiled into the store [$LEZ_RULES, else "
        f"{DEFAULT_RULES_DIR} when it exists, else none]",
    )
    bd.add_argument(
        "--source-date",
        default=None,
        help="date of the extract YYYY-MM-DD (default: newest valid_from)",
    )
    bd.add_argument(
        "--retention-days",
        type=int,
        default=DEFAULT_RETENTION_DAYS,
        help="purge versions closed longer ago than this [%(default)s]",
    )
    bd.add_argument(
        "--max-reject-share",
        type=float,
        default=DEFAULT_MAX_REJECT_SHARE,
        help="fail if more than this share of rows is rejected [%(default)s]",
    )
    bd.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="threads for validation, keying and sorting [%(default)s]",
    )
    bd.add_argument("--snapshot-id", default=None, help="snapshot id (default: time + random)")
    bd.add_argument("--json", action="store_true", help="print the build report as JSON")

    rg = sub.add_parser(
        "registrations",
        help="import the cities' registrations: add, withdraw or end early (idempotent)",
    )
    rg.add_argument("file", type=Path, help="registrations file, see docs/registrations.md")
    _key_arg(rg, "HMAC key file")
    _store_arg(rg, "--store")

    _sync_parser(sub)
    _reconcile_parser(sub)
    _compact_parser(sub)

    inf = sub.add_parser("info", help="show what the published store holds")
    _store_arg(inf, "--store")
    for name, command in sub.choices.items():
        _describe(command, name)
    return p


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and examples as written, option defaults shown (for the commands whose
    options do not give their defaults in their own words)."""


COMMAND_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "keygen": (
        "Create a new random HMAC key, the secret every plate is pseudonymised with, in a file "
        "readable by its owner only (mode 0600). It never overwrites a key: a store, its "
        "registrations and the servers must all use the same one, so keep a copy off the "
        "machine.",
        ("lez-loader keygen --key var/keys/hmac.key",),
    ),
    "synth": (
        "Write a synthetic register in the DIV extract's format (extract.csv, or .csv.gz with "
        "--gzip): Belgian and foreign plates, fleet shares by fuel, category and euro norm, "
        "histories and a few malformed rows, for development and benchmarks. The same seed "
        "gives the same file.",
        (
            "lez-loader synth --plates 100000 --seed 7 --out var/reg",
            "lez-loader synth --plates 8000000 --gzip --out var/reg-8m",
        ),
    ),
    "build": (
        "Read a full DIV extract, validate every row (a bad row is reported with its line and "
        "left out), pseudonymise the plates with the key, compile the rule tables and publish a "
        "new store under the store root in one atomic switch; running servers load it by "
        "themselves. Exit 0 published, 1 refused (too many bad rows, no rules), 2 usage.",
        (
            "lez-loader build var/reg/extract.csv --key var/keys/hmac.key --out var/store",
            "lez-loader build extract.csv.gz --rules rules/ --source-date 2026-11-01 --json",
        ),
    ),
    "registrations": (
        "Import the cities' registrations (day passes, exemptions, foreign vehicles) from a "
        "CSV file into the published store: rows add, withdraw or end a registration early; "
        "importing the same file twice changes nothing. Bad rows are reported with their line.",
        ("lez-loader registrations regs.csv --key var/keys/hmac.key --store var/store",),
    ),
    "sync": (
        "",
        (
            "lez-loader sync --store var/store --key var/keys/hmac.key \\\n"
            "    --div-url https://div.example:8443 --div-ca ca.pem --div-cert client.pem "
            "--div-key client.key",
            "lez-loader sync --store var/store --through 2026-11-30",
        ),
    ),
    "reconcile": (
        "",
        (
            "lez-loader reconcile extract.csv --store var/store --key var/keys/hmac.key "
            "--report diff.json",
        ),
    ),
    "compact": (
        "",
        ("lez-loader compact --store var/store", "lez-loader compact --store var/store --force"),
    ),
    "info": (
        "Show what the published store holds: its snapshot, source date, plates and versions, "
        "rule revisions, the last synced day and the data quality of the register (missing "
        "and derived values, unknown codes, rejected rows).",
        ("lez-loader info --store var/store",),
    ),
}
"""Each subcommand's description (empty: the one given where it is defined) and examples."""

HELP_WIDTH: Final = 88


def _describe(command: argparse.ArgumentParser, name: str) -> None:
    description, examples = COMMAND_HELP[name]
    command.description = textwrap.fill(description or command.description or "", HELP_WIDTH)
    lines = "\n".join(f"  {example}" for example in examples)
    command.epilog = f"example{'s' if len(examples) > 1 else ''}:\n{lines}"
    formatter = command.formatter_class
    shows_defaults = isinstance(formatter, type) and issubclass(
        formatter, argparse.ArgumentDefaultsHelpFormatter
    )
    command.formatter_class = (
        _HelpFormatter if shows_defaults else argparse.RawDescriptionHelpFormatter
    )


def _path_arg(
    p: argparse.ArgumentParser, flag: str, *, dest: str, env: str, default: str, help_text: str
) -> None:
    """A path option whose default comes from a LEZ_* variable, shown in --help."""
    p.add_argument(
        flag,
        dest=dest,
        type=Path,
        default=env_path(env, default),
        help=f"{help_text} [%(default)s]",
    )


def _key_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    _path_arg(
        p, "--key", dest="key", env="LEZ_KEY_FILE", default="var/keys/hmac.key", help_text=help_text
    )


def _store_arg(p: argparse.ArgumentParser, flag: str) -> None:
    _path_arg(p, flag, dest="store", env="LEZ_STORE", default="var/store", help_text="store root")


def _rules_dir(given: Path | None) -> Path | None:
    """The rule revisions a build compiles: `--rules`, else $LEZ_RULES, else ./rules if present.

    Only that last default may be missing (then the store holds no rules); a directory named
    on the command line or in LEZ_RULES must exist, so a typo cannot silently drop the rules.
    """
    if given is None and not os.environ.get("LEZ_RULES"):
        default = Path(DEFAULT_RULES_DIR)
        return default if default.is_dir() else None
    path = given if given is not None else Path(os.environ["LEZ_RULES"])
    if not path.is_dir():
        source = "--rules" if given is not None else "LEZ_RULES"
        raise ValueError(
            f"{source} {path}: no such directory; name the directory of rule revisions "
            f"(*.toml, e.g. {DEFAULT_RULES_DIR}/), or leave --rules and LEZ_RULES unset to use "
            f"./{DEFAULT_RULES_DIR} when present"
        )
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(_COMMANDS[args.command](args))
    except (LezError, ValueError, OSError) as exc:
        print(f"lez-loader {args.command}: {exc}", file=sys.stderr)
        return 2


def _keygen(args: argparse.Namespace) -> int:
    from lez.keys import generate_key_file

    key_id = generate_key_file(args.key)
    print(f"wrote {args.key} (key id {key_id}); keep it secret, back it up")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from loader.synth import generate

    summary = generate(
        args.plates,
        args.seed,
        args.out,
        source_date=dt.date.fromisoformat(args.source_date),
        compress=args.gzip,
        progress=StageProgress(),
    )
    print(f"wrote {summary.path} ({summary.rows:,} rows for {summary.plates:,} plates)")
    return 0


def _build(args: argparse.Namespace) -> int:
    from lez.errors import BuildFailed
    from loader.build import build_store
    from loader.extract import READ_STAGES

    config = LoaderConfig(
        store_root=args.store,
        key_file=args.key,
        rules_dir=_rules_dir(args.rules),
        reports_dir=args.store / "reports",
        source_date=dt.date.fromisoformat(args.source_date) if args.source_date else None,
        retention_days=args.retention_days,
        max_reject_share=args.max_reject_share,
        workers=args.workers,
    ).validate()
    try:
        report = build_store(
            config,
            args.extract,
            progress=StageProgress(byte_stages=READ_STAGES),
            snapshot_id=args.snapshot_id,
        )
    except BuildFailed as exc:
        print(f"lez-loader build: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(report.to_json())
        return 0
    total = sum(report.seconds.values())
    print(f"published snapshot {report.snapshot_id} in {total:.1f} s")
    print(
        f"  rows read {report.rows_read:,}, rejected {report.rows_rejected:,}"
        + (f" (see {report.rejects_file})" if report.rows_rejected else "")
    )
    print(
        f"  plates {report.plates:,}, versions {report.versions:,}, "
        f"purged {report.versions_purged:,}"
    )
    unknown = {k: v["unrecognised"] for k, v in report.unknown_codes.items() if v["unrecognised"]}
    if unknown:
        print(f"  unrecognised codes counted as UNKNOWN: {unknown}")
    from lez.data_quality import summary

    print(f"  {summary(report.data_quality)}")
    print(f"  rule revisions: {', '.join(report.rulesets) or 'none'}")
    print(f"  store {report.store_bytes / 2**20:,.0f} MiB at {report.build_dir}")
    print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()))
    return 0


def _registrations(args: argparse.Namespace) -> int:
    from lez.keys import load_key
    from loader.registrations_import import import_registrations

    result = import_registrations(args.store, args.file, load_key(args.key))
    print(result)
    return 0


def _info(args: argparse.Namespace) -> int:
    from lez.store import open_store

    reader = open_store(args.store)
    try:
        meta = reader.meta
        print(
            json.dumps(
                {k: getattr(meta, k) for k in meta.__dataclass_fields__}, indent=2, default=list
            )
        )
    finally:
        reader.close()
    return 0


def _sync_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from loader.sync import CHECKPOINT_NAME

    sc = sub.add_parser(
        "sync",
        help="apply the DIV's daily changes (docs/sync.md), one publication per day",
        description="Fetch each day after the store's last synced day from the DIV change feed "
        "(docs/div-feed.md), apply it and publish it in one step, until --through or the first "
        "day the DIV has not closed. Exit 0 when up to date, 1 on failure (the published store "
        "is then the last complete day; run again to resume), 2 for usage errors.",
    )
    _key_arg(sc, "HMAC key file")
    _store_arg(sc, "--store")
    for flag, env, what in (
        ("--div-url", "LEZ_DIV_URL", "base URL of the DIV feed, e.g. https://div.example:8443"),
        ("--div-ca", "LEZ_DIV_CA", "PEM file of the CA that signed the feed's certificate"),
        ("--div-cert", "LEZ_DIV_CERT", "PEM file of our client certificate"),
        ("--div-key", "LEZ_DIV_KEY", "PEM file of our client certificate's private key"),
    ):
        sc.add_argument(
            flag, default=os.environ.get(env), help=f"{what} [${env}; required unless set]"
        )
    sc.add_argument(
        "--through", default=None, help="last day to sync, YYYY-MM-DD [until the DIV has no more]"
    )
    sc.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"checkpoint file of the day being fetched [STORE/{CHECKPOINT_NAME}]",
    )
    sc.add_argument(
        "--retention-days",
        type=int,
        default=DEFAULT_RETENTION_DAYS,
        help="purge plates crossed out longer ago than this [%(default)s]",
    )
    sc.add_argument("--timeout", type=float, default=30.0, help="seconds per request [%(default)s]")
    sc.add_argument("--attempts", type=int, default=8, help="tries per request [%(default)s]")
    sc.add_argument("--page-size", type=int, default=5000, help="feed page size [%(default)s]")
    sc.add_argument(
        "--no-compact",
        action="store_true",
        help="never compact; print when `lez-loader compact` should run [compact when the "
        "store's policy says the layer is large]",
    )
    sc.add_argument("--json", action="store_true", help="print the sync report as JSON")
    sc.add_argument(
        "--nice",
        type=int,
        default=10,
        help="lower this process's CPU priority by this much (0-19) so that a server on the same "
        "machine keeps its latency while a day is fetched and applied [%(default)s]",
    )


def _reconcile_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rc = sub.add_parser(
        "reconcile",
        help="compare a fresh full extract with the store (read-only; exit 1 when different)",
        description="Parse a full extract as `build` does and compare it with the store's "
        "content: missing, extra, field and history differences, by pseudonymised key. Exit 0 "
        "equal, 1 different, 2 for errors. --rebuild then builds and publishes the extract.",
    )
    rc.add_argument("extract", type=Path, help="extract file (.csv or .csv.gz)")
    _key_arg(rc, "HMAC key file")
    _store_arg(rc, "--store")
    rc.add_argument(
        "--source-date",
        default=None,
        help="date of the extract YYYY-MM-DD [the store's last synced day, else its source date]",
    )
    rc.add_argument(
        "--retention-days",
        type=int,
        default=DEFAULT_RETENTION_DAYS,
        help="purge as the build does [%(default)s]",
    )
    rc.add_argument("--report", type=Path, default=None, help="write the full report as JSON here")
    rc.add_argument(
        "--rebuild", action="store_true", help="then build the store from the extract and publish"
    )
    rc.add_argument(
        "--rules",
        type=Path,
        default=None,
        help=f"rule revisions for --rebuild [$LEZ_RULES, else {DEFAULT_RULES_DIR} when it exists]",
    )


def _sync(args: argparse.Namespace) -> int:
    from loader.feed import FeedSettings
    from loader.sync import DayReport, SyncSettings, run_sync

    missing = [f for f in ("div_url", "div_ca", "div_cert", "div_key") if not getattr(args, f)]
    if missing:
        names = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise ValueError(f"give {names} (or the LEZ_DIV_* variables); see --help")
    if args.retention_days < 0:
        raise ValueError("--retention-days must be 0 or more")
    if not 0 <= args.nice <= 19:
        raise ValueError("--nice must be between 0 and 19")
    os.nice(args.nice)  # a background job: serving on the same cores comes first
    settings = SyncSettings(
        store_root=args.store,
        key_file=args.key,
        feed=FeedSettings(
            base_url=args.div_url,
            ca_file=Path(args.div_ca),
            cert_file=Path(args.div_cert),
            key_file=Path(args.div_key),
            timeout=args.timeout,
            attempts=args.attempts,
            page_size=args.page_size,
        ),
        checkpoint=args.checkpoint,
        through=dt.date.fromisoformat(args.through) if args.through else None,
        retention_days=args.retention_days,
        compact=not args.no_compact,
    )
    printed = not args.json

    def on_day(report: DayReport) -> None:
        if printed:
            print("\n".join(report.lines()), flush=True)

    try:
        result = run_sync(settings, progress=StageProgress(), on_day=on_day)
    except (LezError, OSError) as exc:
        print(f"lez-loader sync: {exc}", file=sys.stderr)
        print(
            "lez-loader sync: stopped; the published store holds the last complete day",
            file=sys.stderr,
        )
        return 1
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=2))
    else:
        print(f"up to date through {result.up_to_date_through} ({result.stopped_because})")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from lez.keys import load_key
    from loader.reconcile import reconcile

    result = reconcile(
        args.store,
        args.extract,
        load_key(args.key),
        source_date=dt.date.fromisoformat(args.source_date) if args.source_date else None,
        retention_days=args.retention_days,
    )
    if args.report:
        args.report.write_text(result.to_json())
    print("\n".join(result.lines()))
    if args.rebuild:
        from loader.build import build_store
        from loader.extract import READ_STAGES

        config = LoaderConfig(
            store_root=args.store,
            key_file=args.key,
            rules_dir=_rules_dir(args.rules),
            reports_dir=args.store / "reports",
            source_date=result.source_date,
            retention_days=args.retention_days,
        ).validate()
        built = build_store(config, args.extract, progress=StageProgress(byte_stages=READ_STAGES))
        print(f"rebuilt: published snapshot {built.snapshot_id}")
    return 0 if result.equal else 1


def _compact_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cp = sub.add_parser(
        "compact",
        help="fold the published layer of daily changes into a new base build",
        description="Write the published snapshot (a base plus its layer of daily changes) as "
        "a new base build, exactly as a fresh build of the same data, and publish it "
        "atomically; running servers switch to it like to any new build. A store whose "
        "published build is already a base is left as it is. Without --force, compacts only "
        "when the compaction policy says so (see --max-layer-keys, --max-layer-share).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _store_arg(cp, "--store")
    cp.add_argument(
        "--max-layer-keys",
        type=int,
        default=DEFAULT_COMPACTION.max_layer_keys,
        help="policy: compact when the layer holds more keys than this",
    )
    cp.add_argument(
        "--max-layer-share",
        type=float,
        default=DEFAULT_COMPACTION.max_layer_share,
        help="policy: compact when the layer's keys exceed this share of the plates",
    )
    cp.add_argument("--force", action="store_true", help="compact whatever the policy says")


def _compact(args: argparse.Namespace) -> int:
    from lez.store import CompactionPolicy, StoreBuilder, needs_compaction
    from lez.store.reader import current_build, read_meta

    meta = read_meta(current_build(args.store))
    if not meta.is_layer:
        print(f"snapshot {meta.snapshot_id} is a base build: nothing to compact")
        return 0
    policy = CompactionPolicy(
        max_layer_keys=args.max_layer_keys, max_layer_share=args.max_layer_share
    )
    if not args.force and not needs_compaction(meta, policy):
        print(
            f"snapshot {meta.snapshot_id}: layer of {meta.layer_keys:,} keys over "
            f"{meta.plates:,} plates is within the policy; nothing done (--force compacts)"
        )
        return 0
    started = time.perf_counter()
    build = StoreBuilder(args.store).compact(progress=StageProgress())
    new = read_meta(build)
    print(
        f"published base {new.snapshot_id} ({new.plates:,} plates, {new.versions:,} versions) "
        f"folding layer {meta.snapshot_id} ({meta.layer_keys:,} keys) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


_COMMANDS = {
    "keygen": _keygen,
    "synth": _synth,
    "build": _build,
    "registrations": _registrations,
    "sync": _sync,
    "reconcile": _reconcile,
    "compact": _compact,
    "info": _info,
}

if __name__ == "__main__":
    sys.exit(main())
