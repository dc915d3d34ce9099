"""PostgreSQL as a peer: a private server the harness installs, starts, loads and stops.

`PgServer` finds the PostgreSQL binaries (or runs `apt-get install -y postgresql` when root and
missing), runs `initdb` as the `postgres` user in a scratch directory (C locale, so text compares
byte by byte like ours), and starts it on a loopback port with settings for a read-mostly
benchmark (`shared_buffers`, `work_mem`, no fsync: durability is not what is measured).

`PgPeer` loads the peers' register (`bench.peer_data`, the versions the store holds) with
`COPY`, indexes it on the plate, and decides a batch the way the best PostgreSQL plan of an
earlier baseline measurement on this machine did: the batch is `COPY`ed into an **unlogged**
table (which, unlike a temporary table, parallel workers can scan), `ANALYZE`d, and joined with
**hash and merge joins disabled and `random_page_cost = 1.1`**, so the planner takes a
(parallel) index nested loop into the register instead of hashing 8M rows. The decisions come
back with `COPY (query) TO STDOUT`. The query is the one DuckDB runs (`bench.sqlrules`),
in the PostgreSQL dialect.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.peer_data import Decided, WireBatch
from bench.peers_duckdb import to_arrays
from bench.sqlrules import POSTGRES, decision_sql
from lez.rules.catalog import Revision

PLAN_SETTINGS = (
    "SET enable_hashjoin = off",
    "SET enable_mergejoin = off",
    "SET random_page_cost = 1.1",
    "SET max_parallel_workers_per_gather = 2",
    "SET min_parallel_table_scan_size = 0",
)
"""The baseline's best plan for a batch join into the register (index nested loop)."""
PLAN_NOTE = (
    "unlogged batch table, ANALYZE, "
    + ", ".join(s.removeprefix("SET ").replace(" = ", "=") for s in PLAN_SETTINGS)
    + " (parallel index nested loop)"
)
"""`PLAN_SETTINGS` as the results and the README table describe the plan."""


def pg_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_postgres() -> Path:
    """The PostgreSQL bin directory, installing the Debian package when missing (root only)."""
    got = pg_bin_dir()
    if got is not None:
        return got
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env, capture_output=True
    )
    got = pg_bin_dir()
    if got is None:
        raise RuntimeError("apt-get install postgresql did not provide initdb")
    return got


class PgServer:
    """A private PostgreSQL cluster in `root`, listening on 127.0.0.1:`port`."""

    def __init__(self, root: Path, port: int, *, shared_buffers: str = "1GB") -> None:
        self.bin = ensure_postgres()
        self.root = root.resolve()
        self.data = root / "data"
        self.port = port
        self.shared_buffers = shared_buffers
        self.as_postgres = os.geteuid() == 0

    def _run(self, args: list[str]) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self.as_postgres else args
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            log = self.root / "server.log"
            tail = log.read_text()[-800:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:1])} failed: {done.stderr[-800:]} {tail}")

    def start(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "--locale=C", "-E", "UTF8", "--no-sync"]
        )  # fmt: skip
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "shared_buffers": self.shared_buffers,
            "work_mem": "'256MB'",
            "maintenance_work_mem": "'512MB'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_wal_size": "'4GB'",
            "max_worker_processes": "4",
            "max_parallel_workers": "2",
            "jit": "off",
            "statement_timeout": "'600s'",
        }
        with (self.data / "postgresql.conf").open("a") as fh:
            for k, v in conf.items():
                fh.write(f"{k} = {v}\n")
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
             "-w", "-t", "60", "start"]
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin / "postgres"), "--version"], check=True, capture_output=True, text=True
        )
        return out.stdout.strip()


def _csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue()


class PgPeer:
    """The register loaded into a PostgreSQL server, and the decision query."""

    REGISTER_COLUMNS = (
        "plate text, valid_from int, valid_to int, first_registration int, max_mass bigint, "
        "running_mass bigint, co2 int, seats smallint, category smallint, kind smallint, "
        "fuel smallint, euro smallint, flags smallint"
    )

    def __init__(self, server: PgServer, register: Path, revision: Revision) -> None:
        import psycopg

        self.conn = psycopg.connect(server.dsn, autocommit=True)
        self.load_s: dict[str, float] = {}
        cur = self.conn.cursor()
        start = time.perf_counter()
        cur.execute(f"CREATE TABLE veh ({self.REGISTER_COLUMNS})")
        pf = pq.ParquetFile(register)
        names = [c.split()[0] for c in self.REGISTER_COLUMNS.split(", ")]
        with cur.copy(f"COPY veh ({', '.join(names)}) FROM STDIN (FORMAT csv)") as cp:
            for rb in pf.iter_batches(batch_size=1 << 18, columns=names):
                cp.write(_csv(pa.Table.from_batches([rb])))
        self.load_s["copy"] = time.perf_counter() - start
        start = time.perf_counter()
        cur.execute("CREATE INDEX veh_plate ON veh (plate, valid_from)")
        self.load_s["index"] = time.perf_counter() - start
        start = time.perf_counter()
        cur.execute("VACUUM ANALYZE veh")
        self.load_s["vacuum_analyze"] = time.perf_counter() - start
        cur.execute("CREATE UNLOGGED TABLE batch (i int, plate text, country text, day int)")
        self.revision = revision
        self._sql: dict[int, str] = {}

    def sql(self, zone_id: int) -> str:
        got = self._sql.get(zone_id)
        if got is None:
            got = decision_sql(
                self.revision, zone_id, POSTGRES, plates="veh", skeleton="nested"
            ).query
            self._sql[zone_id] = got
        return got

    def decide(self, batch: WireBatch, zone_id: int) -> Decided:
        """COPY the batch in, ANALYZE, run the query, COPY the decisions out (all timed)."""
        cur = self.conn.cursor()
        cur.execute("TRUNCATE batch")
        with cur.copy("COPY batch FROM STDIN (FORMAT csv)") as cp:
            cp.write(_csv(batch.arrow()))
        cur.execute("ANALYZE batch")
        for s in PLAN_SETTINGS:
            cur.execute(s)
        out = io.BytesIO()
        with cur.copy(f"COPY ({self.sql(zone_id)}) TO STDOUT (FORMAT csv)") as cp:
            for part in cp:
                out.write(part)
        table = pacsv.read_csv(
            io.BytesIO(out.getvalue()),
            read_options=pacsv.ReadOptions(
                column_names=["i", "outcome", "reason", "allowed_until", "euro"]
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "i": pa.int32(),
                    "outcome": pa.uint8(),
                    "reason": pa.uint8(),
                    "allowed_until": pa.int32(),
                    "euro": pa.uint8(),
                }
            ),
        )
        return to_arrays(table, len(batch))

    def close(self) -> None:
        self.conn.close()
