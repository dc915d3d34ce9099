"""DuckDB as a peer: in-process, 2 threads, the register as a table, the rules as SQL.

The register is loaded from the peers' Parquet file (`bench.peer_data`): the same versions the
store holds. The batch is registered as an Arrow table built zero-copy over the packed plate
blob the stream sends; the query (`bench.sqlrules`) normalises and validates the plates, joins
the register on the day's version, enriches, and reads the compiled rule table. Results are
fetched as NumPy arrays and put back in input order (that is part of the timed work).

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
from bench.sqlrules import DUCKDB, cell_rows, decision_sql
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
        self._sql: dict[tuple[int, bool], str] = {}
        start = time.perf_counter()
        src = str(register).replace("'", "''")
        self.con.execute(f"CREATE TABLE veh AS SELECT * EXCLUDE (pkey) FROM read_parquet('{src}')")
        self.con.execute("CREATE TABLE veh_plates AS SELECT DISTINCT plate FROM veh")
        self.load_plain_s = time.perf_counter() - start
        start = time.perf_counter()
        self.con.execute(
            f"CREATE TABLE vehk AS SELECT * EXCLUDE (plate) FROM read_parquet('{src}')"
        )
        self.con.execute("CREATE TABLE vehk_keys AS SELECT DISTINCT pkey FROM vehk")
        self.load_hmac_s = time.perf_counter() - start

    def sql(self, zone_id: int, keyed: bool) -> str:
        """The decision query of a zone (its answer table is created on first use)."""
        got = self._sql.get((zone_id, keyed))
        if got is not None:
            return got
        cells = f"lez_cell_{zone_id}"
        if not any(k[0] == zone_id for k in self._sql):
            idx, outcome, reason, until = cell_rows(self.revision.compiled(zone_id))
            table = pa.table({"idx": idx, "outcome": outcome, "reason": reason, "until": until})
            self.con.register("cells_src", table)
            self.con.execute(f"CREATE TABLE {cells} AS SELECT * FROM cells_src")
            self.con.unregister("cells_src")
        if keyed:
            got = decision_sql(
                self.revision,
                zone_id,
                DUCKDB,
                register="vehk",
                plates="vehk_keys",
                cells=cells,
                key_sql=hmac_sql(self.keyer, "'BE' || np"),
            ).query
        else:
            got = decision_sql(self.revision, zone_id, DUCKDB, cells=cells).query
        self._sql[(zone_id, keyed)] = got
        return got

    def decide(self, batch: WireBatch, zone_id: int, *, keyed: bool) -> Decided:
        """Decide a batch (timed by the caller: Arrow view, query, fetch, reorder)."""
        query = self.sql(zone_id, keyed)
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
