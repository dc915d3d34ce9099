"""Quotas shared by every worker of a server and kept across restarts, per organisation.

Four limits, each from the caller's clients-file entry (`server.auth.Identity`, defaults in
`server.config`): single checks per minute and per Brussels day, pairs per Brussels day (of
every call; a single check counts one) and CheckStreams open at once over all workers. A call
over a limit is refused with `RateLimited` naming the limit, and its RetryInfo says when the
quota allows it again: the start of the next minute window, the next Brussels day (`lez.days`),
or about a second for a stream slot. A refused call uses nothing of the quota.

**The mechanism: one SQLite database in WAL mode** (`quotas.sqlite` in the state directory,
`ServerConfig.state_path`), opened by each worker after the fork. Why SQLite rather than a
small LMDB environment: every charge is a read-check-write of a few counters that must be
atomic across processes, and SQLite gives exactly that (`BEGIN IMMEDIATE` takes the one write
lock; a process killed while holding it loses the lock with its file descriptor, and the
transaction rolls back), with schema, pruning and inspection (`sqlite3 quotas.sqlite`) for free
and no module outside `lez/store` importing `lmdb` (tests/test_layout.py). LMDB would save some
microseconds a call, not worth a second storage engine in the server. `synchronous=NORMAL`:
a commit reaches the operating system before the call goes on, so a killed worker or a
restarted server keeps every count; only a power cut can lose the last moments of counts (the
WAL is synced at checkpoints), which the audit log would still show. The cost per charge is
measured by `bench/quota_bench.py`.

Counters are fixed windows: `checks_per_minute` counts within the UTC minute (`period` = the
minute number), the daily ones within the Brussels day (`period` = the day number); rows of
past windows are pruned as windows pass, so the file stays small.

**Streams are leases**: a row per open stream holding the worker's pid and that process's
start time (from `/proc`, so a recycled pid is not mistaken for the holder). Normally the
stream's end deletes its row; rows of a process that no longer exists (a worker killed by
SIGKILL, a server killed whole) are reclaimed when a stream of the organisation would be refused
and when a worker opens the store, so a dead worker's streams never count against the limit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lez.days import BRUSSELS, brussels_day
from lez.errors import Overloaded, RateLimited
from server.auth import Identity

log = logging.getLogger("lez.server")

DB_NAME: Final = "quotas.sqlite"
SECONDS_PER_MINUTE: Final = 60
BUSY_TIMEOUT_MS: Final = 2000
"""How long a charge waits for another worker's transaction (they last microseconds)."""
ENDED_STATES: Final = frozenset({"Z", "X", "x"})
"""/proc states of a process that has ended (zombie, dead)."""
STREAM_RETRY_S: Final = 1.0
"""RetryInfo of a refused stream: slots free up as streams end."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS usage (
    organisation TEXT NOT NULL,
    counter TEXT NOT NULL,
    period INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (organisation, counter, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_leases (
    id INTEGER PRIMARY KEY,
    organisation TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started TEXT NOT NULL,
    opened REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_organisation ON stream_leases (organisation);
"""

CHECKS_PER_MINUTE: Final = "checks_per_minute"
CHECKS_PER_DAY: Final = "checks_per_day"
PAIRS_PER_DAY: Final = "pairs_per_day"
CONCURRENT_STREAMS: Final = "concurrent_streams"


def process_started(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc), None when there is no such
    process or it has ended (a zombie not yet reaped by its parent). With the pid it names one
    process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # fields after the command name (which may hold spaces): state is the 3rd, starttime the 22nd
    fields = stat[stat.rindex(")") + 2 :].split()
    if len(fields) <= 19 or fields[0] in ENDED_STATES:
        return None
    return fields[19]


def seconds_to_next_minute(now: float) -> float:
    """Seconds from `now` (Unix time) to the start of the next minute window."""
    return SECONDS_PER_MINUTE - now % SECONDS_PER_MINUTE


def seconds_to_next_brussels_day(now: float) -> float:
    """Seconds from `now` (Unix time) to the next midnight in Brussels (23 or 25 hours on the
    days the clocks change)."""
    moment = dt.datetime.fromtimestamp(now, BRUSSELS)
    tomorrow = moment.date() + dt.timedelta(days=1)
    midnight = dt.datetime.combine(tomorrow, dt.time(0), tzinfo=BRUSSELS)
    return midnight.timestamp() - now


@dataclass(frozen=True, slots=True)
class _Charge:
    """One counter a call increases: which, of how much, its limit, and its window."""

    counter: str
    amount: int
    limit: int
    period: int
    retry_after_s: float
    what: str  # how the refusal names the limit


class QuotaStore:
    """The shared counters of one server (or of several sharing a state directory)."""

    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_NAME
        self.clock = clock
        self._db = sqlite3.connect(
            self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )  # fmt: skip
        self._set_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._pid = os.getpid()
        self._started = process_started(self._pid) or ""
        self._pruned_minute = -1
        self.reclaim_dead_leases()

    def _set_wal(self) -> None:
        """WAL mode (kept by the file once set). Switching to it takes an exclusive lock that
        SQLite does not wait for with its busy timeout, so servers or replicas opening a new
        database together retry here for up to the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> QuotaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- counters --

    def charge_check(self, who: Identity) -> None:
        """Count one single check (minute, day, and one pair of the day); RateLimited naming the
        first limit it would pass, nothing counted then."""
        if not (who.checks_per_minute or who.checks_per_day or who.pairs_per_day):
            return
        now = self.clock()
        minute, day = int(now // SECONDS_PER_MINUTE), brussels_day(_utc(now))
        to_midnight = seconds_to_next_brussels_day(now)
        self._charge(
            who,
            [
                _Charge(CHECKS_PER_MINUTE, 1, who.checks_per_minute, minute,
                        seconds_to_next_minute(now), "single checks a minute"),
                _Charge(CHECKS_PER_DAY, 1, who.checks_per_day, day, to_midnight,
                        "single checks a day"),
                _Charge(PAIRS_PER_DAY, 1, who.pairs_per_day, day, to_midnight, "pairs a day"),
            ],
            minute,
        )  # fmt: skip

    def charge_pairs(self, who: Identity, pairs: int) -> None:
        """Count the pairs of a stream chunk or a recheck; RateLimited when the daily quota
        would be passed (nothing counted then)."""
        if who.pairs_per_day <= 0:
            return
        now = self.clock()
        day = brussels_day(_utc(now))
        self._charge(
            who,
            [_Charge(PAIRS_PER_DAY, pairs, who.pairs_per_day, day,
                     seconds_to_next_brussels_day(now), "pairs a day")],
            int(now // SECONDS_PER_MINUTE),
        )  # fmt: skip

    def used(self, organisation: str, counter: str) -> int:
        """What an organisation has used of a counter in the current window (for tests and
        operators)."""
        now = self.clock()
        period = int(now // SECONDS_PER_MINUTE) if counter == CHECKS_PER_MINUTE else None
        if period is None:
            period = brussels_day(_utc(now))
        row = self._db.execute(
            "SELECT used FROM usage WHERE organisation = ? AND counter = ? AND period = ?",
            (organisation, counter, period),
        ).fetchone()
        return int(row[0]) if row else 0

    def _charge(self, who: Identity, charges: list[_Charge], minute: int) -> None:
        active = [c for c in charges if c.limit > 0]
        if not active:
            return
        with self._transaction() as db:
            for c in active:
                row = db.execute(
                    "SELECT used FROM usage WHERE organisation = ? AND counter = ? AND period = ?",
                    (who.organisation, c.counter, c.period),
                ).fetchone()
                used = int(row[0]) if row else 0
                if used + c.amount > c.limit:
                    raise RateLimited(
                        f"{who.organisation} is limited to {c.limit:,} {c.what} ({used:,} used"
                        f"{f', {c.amount:,} asked' if c.amount > 1 else ''}); retry in "
                        f"{math.ceil(c.retry_after_s):,} s or ask the operator for a higher quota",
                        quota=c.counter,
                        limit=c.limit,
                        retry_after_s=c.retry_after_s,
                    )
            for c in active:
                db.execute(
                    "INSERT INTO usage (organisation, counter, period, used) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET used = used + excluded.used",
                    (who.organisation, c.counter, c.period, c.amount),
                )
            if minute != self._pruned_minute:  # past windows go, once a minute per worker
                self._pruned_minute = minute
                today = brussels_day(_utc(minute * SECONDS_PER_MINUTE))
                db.execute(
                    "DELETE FROM usage WHERE (counter = ? AND period < ?) "
                    "OR (counter != ? AND period < ?)",
                    (CHECKS_PER_MINUTE, minute, CHECKS_PER_MINUTE, today),
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # another process held the lock too long
            log.warning("quota store busy: %s", exc)
            raise Overloaded("the quota counters are busy; retry in a second") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- stream leases --

    @contextlib.contextmanager
    def stream_lease(self, who: Identity) -> Iterator[None]:
        """Hold one of the organisation's stream slots for the body; RateLimited when they are
        all held (by live processes)."""
        lease = self._acquire(who)
        try:
            yield
        finally:
            if lease is not None:
                self._release(lease)

    def open_streams(self, organisation: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM stream_leases WHERE organisation = ?", (organisation,)
        ).fetchone()
        return int(row[0])

    def _acquire(self, who: Identity) -> int | None:
        limit = who.concurrent_streams
        if limit <= 0:
            return None
        with self._transaction() as db:
            held = db.execute(
                "SELECT id, pid, pid_started FROM stream_leases WHERE organisation = ?",
                (who.organisation,),
            ).fetchall()
            if len(held) >= limit:
                dead = [(i,) for i, pid, started in held if not self._alive(pid, started)]
                db.executemany("DELETE FROM stream_leases WHERE id = ?", dead)
                if len(held) - len(dead) >= limit:
                    raise RateLimited(
                        f"{who.organisation} may hold {limit} streams open at once and holds "
                        f"{len(held) - len(dead)}; send more pairs per stream, or retry when "
                        "one ends",
                        quota=CONCURRENT_STREAMS,
                        limit=limit,
                        retry_after_s=STREAM_RETRY_S,
                        attempt=False,  # no pair sent yet: load, not a consultation
                    )
            cursor = db.execute(
                "INSERT INTO stream_leases (organisation, pid, pid_started, opened) "
                "VALUES (?, ?, ?, ?)",
                (who.organisation, self._pid, self._started, self.clock()),
            )
            return int(cursor.lastrowid or 0)

    def _release(self, lease: int) -> None:
        try:
            with self._transaction() as db:
                db.execute("DELETE FROM stream_leases WHERE id = ?", (lease,))
        except Overloaded:  # the row stays until this process ends; then it is reclaimed
            log.warning("could not release stream lease %d now", lease)

    def _alive(self, pid: int, started: str) -> bool:
        if pid == self._pid:
            return started == self._started
        return process_started(pid) == started

    def reclaim_dead_leases(self) -> int:
        """Delete the leases of processes that are gone; returns how many."""
        with self._transaction() as db:
            held = db.execute("SELECT id, pid, pid_started FROM stream_leases").fetchall()
            dead = [(i,) for i, pid, started in held if not self._alive(pid, started)]
            db.executemany("DELETE FROM stream_leases WHERE id = ?", dead)
        if dead:
            log.info("reclaimed %d stream leases of processes that are gone", len(dead))
        return len(dead)


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)
