"""The register build: extract -> validate -> key -> sort -> LMDB, verified and published.

`build_store` is what `lez-loader build` runs. It parses the extract (`loader.extract`), keys
every plate with the HMAC key (`lez.keys`, batch form, split over worker processes), refuses
overlapping versions, drops plates crossed out longer ago than the retention period, groups
versions by key (`lez.store.group_sorted`), compiles the rule revisions, and hands everything to
`StoreBuilder`, which writes a new build and switches the store to it atomically. If the share
of rejected rows exceeds the configured limit the build fails before anything is published.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from functools import partial, reduce
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lez import data_quality, keys
from lez.days import DAY_OPEN, from_day, to_day
from lez.errors import BuildFailed, StoreFormatMismatch, StoreNotReady
from lez.registrations import REGISTRATION_DTYPE
from lez.store import StoreBuilder, StoreMeta
from lez.store.columns import (
    KeyedRecords,
    empty_table,
    group_sorted,
    sort_by_key,
)
from lez.store.reader import open_store
from lez.store.writer import Progress, new_snapshot_id, no_progress, utc_now
from lez.threads import part_bounds, run_threaded
from lez.vehicle import FORMAT_VERSION
from loader.config import LoaderConfig
from loader.extract import (
    Extract,
    Reject,
    read_table,
    reject_summary,
    release_read_memory,
    validate_table,
)
from loader.parallel import as_items, gather_rows


@dataclass(slots=True)
class BuildReport:
    """What a build did; written as JSON beside the store and summarised for people."""

    snapshot_id: str = ""
    published: bool = False
    build_dir: str = ""
    rows_read: int = 0
    rows_rejected: int = 0
    rejects_by_rule: dict[str, int] = field(default_factory=dict)
    rejects_file: str = ""
    plates: int = 0
    versions: int = 0
    versions_purged: int = 0
    unknown_codes: dict[str, dict[str, int]] = field(default_factory=dict)
    rulesets: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # user/sys, all threads
    store_bytes: int = 0
    data_quality: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {k: getattr(self, k) for k in self.__dataclass_fields__}, indent=2, sort_keys=True
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """The extract rows that go into the store, in key order, and what was left out."""

    rows: npt.NDArray[np.int64]  # indices into the extract's accepted rows, key-sorted
    hi: npt.NDArray[np.uint64]
    lo: npt.NDArray[np.uint64]
    records: npt.NDArray[np.void]  # the extract's records at `rows`
    overlap_rejects: list[Reject]
    purged: int


def select_versions(ext: Extract, retention_cutoff: int, workers: int = 1) -> Selection:
    """Sort by (key, valid_from), refuse overlapping versions, purge plates crossed out on or
    before `retention_cutoff`. The one definition of what a store holds (the bench's peers
    load exactly these rows).

    The sort runs on the keys' big-endian halves as they are (no converted copy); the records
    and keys are then gathered once in key order by `workers` threads, and the rows refused or
    purged (a few percent) are squeezed out in place.
    """
    halves = np.ascontiguousarray(ext.keys, dtype=np.uint8).view(">u8")
    rows = sort_by_key(halves[:, 0], halves[:, 1], ext.records["valid_from"], workers)
    records = gather_rows(ext.records, rows, workers)
    sorted_halves = gather_rows(ext.keys, rows, workers).view(np.uint64)
    if sys.byteorder == "little":  # big-endian bytes -> native values (memcmp order), in place
        sorted_halves.byteswap(inplace=True)
    hi, lo = sorted_halves[:, 0], sorted_halves[:, 1]
    clash = overlapping_versions(hi, lo, records["valid_from"], records["valid_to"])
    overlap_rejects = [
        Reject(line=int(x), column="valid_from", rule="versions of a plate overlap")
        for x in ext.lines[rows[clash]].tolist()
    ]
    if len(clash):
        keep = np.ones(len(rows), dtype=np.bool_)
        keep[clash] = False
        rows, records, sorted_halves = (squeeze(a, keep) for a in (rows, records, sorted_halves))
        hi, lo = sorted_halves[:, 0], sorted_halves[:, 1]
    gone = crossed_out_before(hi, lo, records["valid_to"], retention_cutoff)
    purged = int(np.count_nonzero(gone))
    if purged:
        np.logical_not(gone, out=gone)
        rows, records, sorted_halves = (squeeze(a, gone) for a in (rows, records, sorted_halves))
        hi, lo = sorted_halves[:, 0], sorted_halves[:, 1]
    return Selection(
        rows=rows,
        hi=hi,
        lo=lo,
        records=records,
        overlap_rejects=overlap_rejects,
        purged=purged,
    )


def squeeze(array: npt.NDArray[Any], keep: npt.NDArray[np.bool_]) -> Any:
    """`array[keep]` written over the start of `array` itself (returned as a view of it): a
    block at a time, so the only new memory is one block."""
    flat = as_items(array)
    kept = 0
    for first in range(0, len(array), _SQUEEZE_BLOCK):
        part = flat[first : first + _SQUEEZE_BLOCK][keep[first : first + _SQUEEZE_BLOCK]]
        flat[kept : kept + len(part)] = part  # never past this block: kept <= first
        kept += len(part)
    return array[:kept]


_SQUEEZE_BLOCK: Final = 1 << 16


def crossed_out_before(
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
    valid_to: npt.NDArray[np.int32],
    cutoff: int,
) -> npt.NDArray[np.bool_]:
    """Rows (of key-sorted input) of plates whose last version ended on or before `cutoff`.

    A plate's data is kept until 6 months after the plate was crossed out (docs/sources.md:
    DIV-VMM protocol section X); the whole history of a plate still in use is kept.
    """
    n = len(hi)
    if n == 0:
        return np.zeros(0, dtype=np.bool_)
    last = np.empty(n, dtype=np.bool_)  # the last (latest) version of its plate
    last[-1] = True
    np.not_equal(hi[1:], hi[:-1], out=last[:-1])
    last[:-1] |= lo[1:] != lo[:-1]
    expired = last & (valid_to != DAY_OPEN) & (valid_to <= cutoff)
    plate = np.cumsum(last, dtype=np.int32 if n < 2**31 else np.int64)  # of each row, from 0
    np.subtract(plate, last, out=plate)
    result: npt.NDArray[np.bool_] = expired[last][plate]
    return result


def overlapping_versions(
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
    valid_from: npt.NDArray[np.int32],
    valid_to: npt.NDArray[np.int32],
) -> npt.NDArray[np.int64]:
    """Rows (of key-sorted input) whose version starts before the previous one of its plate ends."""
    if len(hi) < 2:
        return np.zeros(0, dtype=np.int64)
    same = (hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1])
    clash = same & (valid_from[1:] < valid_to[:-1])
    return np.flatnonzero(clash) + 1


def build_store(
    config: LoaderConfig,
    extract_path: Path,
    *,
    progress: Progress = no_progress,
    snapshot_id: str | None = None,
) -> BuildReport:
    """Build and publish a store from an extract. Raises BuildFailed without publishing."""
    report = BuildReport()
    if config.rules_dir is None:  # a store without rules would crash-loop every server
        raise BuildFailed(
            "no rule revisions to compile: a store without rules cannot answer any question, "
            "so nothing was built or published; point the build at the rule tables with "
            "--rules DIR (or LEZ_RULES), e.g. --rules rules/",
            report,
        )
    timer = _Timer(report)
    keyer = keys.load_key(config.key_file)

    with timer("read_csv"):  # progress in bytes of the file (`extract.READ_STAGES`)
        table, lines, skipped = read_table(extract_path, progress)
    progress("validate_and_key", 0, 1)
    with timer("validate_and_key"):  # normalise, key (threads), validate every column
        ext = validate_table(table, lines, skipped, keyer, config.workers)
        del table
        release_read_memory()  # the parse's memory, before the sort's
    progress("validate_and_key", 1, 1)
    report.rows_read = ext.rows_read
    report.unknown_codes = ext.unknown_codes

    source_day = to_day(config.source_date) if config.source_date else latest_day(ext)
    with timer("sort"):
        chosen = select_versions(ext, source_day - config.retention_days, config.workers)
    rejects = list(ext.rejects) + chosen.overlap_rejects
    del ext  # the unsorted columns: the selection holds what the store needs
    report.versions_purged = chosen.purged
    with timer("group"):
        vehicles = group_sorted(chosen.hi, chosen.lo, chosen.records)
    del chosen
    rejects.sort(key=lambda r: r.line)

    report.rows_rejected = len(rejects)
    report.rejects_by_rule = reject_summary(rejects)
    report.plates = vehicles.size
    report.versions = len(vehicles.records)
    config.reports_dir.mkdir(parents=True, exist_ok=True)
    snapshot_id = snapshot_id or new_snapshot_id()
    report.snapshot_id = snapshot_id
    rejects_file = config.reports_dir / f"rejects-{snapshot_id}.csv"
    _write_rejects(rejects_file, rejects)
    report.rejects_file = str(rejects_file)

    share = report.rows_rejected / max(1, report.rows_read)
    if share > config.max_reject_share:
        _write_report(config, report)
        raise BuildFailed(
            f"{report.rows_rejected} of {report.rows_read} rows rejected ({share:.2%}), over the "
            f"limit of {config.max_reject_share:.2%}; see {rejects_file}. The published store "
            "is unchanged.",
            report,
        )

    with timer("rules"):
        rulesets = _rule_texts(config)
    report.rulesets = sorted(rulesets)

    with timer("quality"):
        quality = data_quality.of_build(
            _count_versions(vehicles.records, config.workers),
            unknown_codes={k: v["unrecognised"] for k, v in report.unknown_codes.items()},
            rejected=report.rows_rejected,
        )
    report.data_quality = quality.to_json()

    previous_seq, registrations = _previous_state(config.store_root, keyer.key_id)
    meta = StoreMeta(
        format_version=FORMAT_VERSION,
        key_id=keyer.key_id,
        snapshot_id=snapshot_id,
        snapshot_seq=previous_seq + 1,
        source_date=(config.source_date or from_day(source_day)).isoformat(),
        built_at=utc_now(),
        plates=vehicles.size,
        versions=len(vehicles.records),
        registrations=len(registrations.records),
        build_report={"rows_read": report.rows_read, "rows_rejected": report.rows_rejected},
        data_quality=quality.to_json(),
    )
    writer_stages = _WriterStages(progress)
    start = time.perf_counter()
    builder = StoreBuilder(config.store_root, map_size=config.map_size, keep=config.keep_builds)
    final = builder.build(
        meta=meta,
        vehicles=vehicles,
        registrations=registrations,
        rulesets=rulesets,
        progress=writer_stages,
    )
    writer_stages.record(report, total=time.perf_counter() - start)
    report.published = True
    report.build_dir = str(final)
    report.store_bytes = (final / "data.mdb").stat().st_size
    _write_report(config, report)
    return report


def _count_versions(records: npt.NDArray[np.void], workers: int) -> data_quality.DataQuality:
    """`data_quality.count_versions` of `records` in 2 parts a worker thread, added up (the
    counts are sums; NumPy releases the GIL): 0.25 s against 0.53 s for the 11M versions of
    the 8M-plate extract on 2 cores."""
    counted = run_threaded(
        [
            partial(data_quality.count_versions, records[first:end])
            for first, end in part_bounds(len(records), 2 * workers)
        ],
        workers,
    )
    return reduce(data_quality.DataQuality.plus, counted)


def latest_day(ext: Extract) -> int:
    """The extract date when none is given: its newest valid_from."""
    return extract_date(ext.records["valid_from"])


def extract_date(valid_from: npt.NDArray[np.signedinteger[Any]]) -> int:
    """The date of an extract whose versions start on `valid_from` (days), when none is given:
    the newest of them (today for an empty extract). The DIV stand-in continues from the day
    after, the first day `lez-loader sync` asks for."""
    return int(valid_from.max()) if len(valid_from) else to_day(dt.date.today())


def _rule_texts(config: LoaderConfig) -> dict[str, str]:
    if config.rules_dir is None:
        return {}
    from lez import rules  # imported late: the engine is only needed when rules are compiled

    texts = rules.read_rule_texts(config.rules_dir)
    rules.load_catalog(texts)  # refuses a bad revision before anything is written
    return texts


def _previous_state(root: Path, key_id: str) -> tuple[int, KeyedRecords]:
    """The published store's snapshot sequence and its registrations (one open).

    Registrations are the cities' data, not DIV's: a register rebuild keeps them, unless the
    store was keyed with another secret or written in another record format (then they cannot
    be carried over and must be imported again). No store yet: 0 and none. A store that exists
    but cannot be read otherwise fails the build rather than losing them.
    """
    try:
        reader = open_store(root)
    except (StoreNotReady, StoreFormatMismatch):
        return 0, empty_table(REGISTRATION_DTYPE)
    try:
        if reader.meta.key_id != key_id:
            return reader.meta.snapshot_seq, empty_table(REGISTRATION_DTYPE)
        with reader.snapshot() as snap:
            return reader.meta.snapshot_seq, snap.registrations.copy()
    finally:
        reader.close()


def _write_rejects(path: Path, rejects: list[Reject]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        fh.write("line,column,rule\n")
        for r in rejects:
            fh.write(f"{r.line},{r.column},{r.rule}\n")
    os.replace(tmp, path)


def _write_report(config: LoaderConfig, report: BuildReport) -> None:
    path = config.reports_dir / f"build-{report.snapshot_id}.json"
    path.write_text(report.to_json())


class _WriterStages:
    """A `Progress` that passes the writer's events on and times its stages from them (each
    stage from its first event to its last, done == total): write, sync, verify; what is left of
    the whole call is `publish` (rename, link, pruning)."""

    STAGES: Final = ("write", "sync", "verify")

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        self.first.setdefault(stage, now)
        if done >= total:
            self.last[stage] = now
        self.progress(stage, done, total)

    def record(self, report: BuildReport, *, total: float) -> None:
        spent = 0.0
        for stage in self.STAGES:
            if stage in self.first and stage in self.last:
                seconds = self.last[stage] - self.first[stage]
                report.seconds[stage] = round(seconds, 3)
                spent += seconds
        report.seconds["publish"] = round(max(0.0, total - spent), 3)


class _Timer:
    def __init__(self, report: BuildReport) -> None:
        self.report = report

    def __call__(self, stage: str) -> _Stage:
        return _Stage(self.report, stage)


class _Stage:
    """Times one stage: wall seconds, and the process's CPU seconds (user and system, over all
    its threads; system time is mostly page faults of new memory) to tell how busy the cores
    were."""

    def __init__(self, report: BuildReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        self.cpu = resource.getrusage(resource.RUSAGE_SELF)

    def __exit__(self, *exc: object) -> None:
        self.report.seconds[self.stage] = round(time.perf_counter() - self.start, 3)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        self.report.cpu_seconds[self.stage] = {
            "user": round(cpu.ru_utime - self.cpu.ru_utime, 3),
            "sys": round(cpu.ru_stime - self.cpu.ru_stime, 3),
        }
