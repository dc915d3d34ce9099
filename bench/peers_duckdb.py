"""DuckDB as a peer: in-process, 2 threads, the register as a table, the rules as SQL.

The register is loaded from the peers' Parquet file (`bench.peer_data`): the same versions the
store holds, enriched at load as the service's loader enriches them (vehicle class, fuel family,
effective euro) and with a 64-bit hash of the join key (`bench.sqlrules.enriched_register_sql`).
The batch is registered as an Arrow table built zero-copy over the packed plate blob the stream
sends; the query (`bench.sqlrules`, skeleton "scan_once") normalises and validates the plates,
joins the register once on the hash, and reads the compiled rule table. Results are fetched as
NumPy arrays and put back in input order (that is part of the timed work).

This is DuckDB's best setup we found (bench/README.md#duckdb-at-its-best has the figures): the
first version joined on the plate strings, enriched at query time and probed the register a
second time for "known plate", 0.51 s for 500,000 pairs where this one takes about 0.29 s. A
join on a 64-bit hash without comparing the plates could match two different plates whose
hashes collide; the bench compares every peer answer with the service's, so a collision would
show as a difference instead of going unnoticed (none so far).

Two variants:
- `plain`: the register holds normalised plates in clear; the batch is joined on them.
- `hmac`: the register holds only the 16-byte HMAC keys (as the store does); the batch's keys
  are computed in SQL. DuckDB has no `hmac` function, so HMAC-SHA256 is composed from its
  `sha256`: sha256((k ^ opad) || sha256((k ^ ipad) || msg)), with the two padded keys as
  blob constants, truncated to 16 bytes. `check_hmac` proves it byte-identical to `lez.keys`.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from bench.peer_data import Decided, WireBatch
from bench.sqlrules import DUCKDB, cell_rows, decision_sql, enriched_register_sql
from lez.keys import PlateKeyer
from lez.rules.catalog import Revision


def _blob(data: bytes) -> str:
    return "'" + "".join(f"\\x{b:02X}" for b in data) + "'::BLOB"


def hmac_sql(keyer: PlateKeyer, message: str) -> str:
    """HMAC-SHA256(secret, message) truncated to 16 bytes, as a DuckDB expression."""
    secret = keyer._secret
    import hashlib

    padded = (secret if len(secret) <= 64 else hashlib.sha256(secret).digest()).ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in padded)
    opad = bytes(b ^ 0x5C for b in padded)
    inner = f"unhex(sha256({_blob(ipad)} || encode({message})))"
    return f"unhex(substring(sha256({_blob(opad)} || {inner}), 1, 32))"


def to_arrays(table: pa.Table, n: int) -> Decided:
    """Result rows (any order) back into input order."""
    i = table.column("i").to_numpy()
    out = Decided(
        outcome=np.zeros(n, np.uint8),
        reason=np.zeros(n, np.uint8),
        allowed_until=np.zeros(n, np.int32),
        euro=np.zeros(n, np.uint8),
    )
    out.outcome[i] = table.column("outcome").to_numpy()
    out.reason[i] = table.column("reason").to_numpy()
    out.allowed_until[i] = table.column("allowed_until").to_numpy()
    out.euro[i] = table.column("euro").to_numpy()
    return out


class DuckPeer:
    """One in-memory DuckDB database with the register loaded (both variants)."""

    def __init__(
        self, register: Path, revision: Revision, keyer: PlateKeyer, threads: int = 2
    ) -> None:
        self.con = duckdb.connect(":memory:", config={"threads": threads})
        self.revision, self.keyer = revision, keyer
        self._sql: dict[tuple[str, int, bool], str] = {}
        start = time.perf_counter()
        src = str(register).replace("'", "''")
        parquet = f"read_parquet('{src}')"
        self.con.execute(f"CREATE TABLE veh AS {enriched_register_sql(parquet, 'plate')}")
        self.load_plain_s = time.perf_counter() - start
        start = time.perf_counter()
        self.con.execute(f"CREATE TABLE vehk AS {enriched_register_sql(parquet, 'pkey')}")
        self.load_hmac_s = time.perf_counter() - start

    def sql(self, zone_id: int, keyed: bool, revision: Revision | None = None) -> str:
        """The decision query of a zone under a revision (default: the peer's), its answer
        table created on first use."""
        rev = revision or self.revision
        got = self._sql.get((rev.id, zone_id, keyed))
        if got is not None:
            return got
        cells = f"lez_cell_{rev.id.replace('-', '_')}_{zone_id}"
        if not any(k[:2] == (rev.id, zone_id) for k in self._sql):
            idx, outcome, reason, until = cell_rows(rev.compiled(zone_id))
            table = pa.table({"idx": idx, "outcome": outcome, "reason": reason, "until": until})
            self.con.register("cells_src", table)
            self.con.execute(f"CREATE TABLE {cells} AS SELECT * FROM cells_src")
            self.con.unregister("cells_src")
        if keyed:
            got = decision_sql(
                rev,
                zone_id,
                DUCKDB,
                register="vehk",
                cells=cells,
                key_sql=hmac_sql(self.keyer, "'BE' || np"),
            ).query
        else:
            got = decision_sql(rev, zone_id, DUCKDB, cells=cells).query
        self._sql[(rev.id, zone_id, keyed)] = got
        return got

    def decide(
        self, batch: WireBatch, zone_id: int, *, keyed: bool, revision: Revision | None = None
    ) -> Decided:
        """Decide a batch (timed by the caller: Arrow view, query, fetch, reorder)."""
        query = self.sql(zone_id, keyed, revision)
        table = batch.arrow()
        self.con.register("batch", table)
        try:
            got = self.con.sql(query).to_arrow_table()
        finally:
            self.con.unregister("batch")
        return to_arrays(got, len(batch))

    def check_hmac(self, plates: list[str]) -> bool:
        """The SQL HMAC equals lez.keys on these normalised Belgian plates."""
        table = pa.table({"np": pa.array(plates, pa.string())})
        self.con.register("hk", table)
        try:
            got = self.con.execute(
                f"SELECT {hmac_sql(self.keyer, chr(39) + 'BE' + chr(39) + ' || np')} FROM hk"
            ).fetchall()
        finally:
            self.con.unregister("hk")
        return [bytes(r[0]) for r in got] == [self.keyer.key("BE", p) for p in plates]

    def close(self) -> None:
        self.con.close()
