"""The register as the SQL peers see it: the same versions the store holds, as one table.

`peer_register` reads the extract with the loader's own parser (`loader.extract.load_extract`:
same validation, same normalisation, same code ids, same rejects), then applies the loader's
retention purge and refusal of overlapping versions (`loader.build.select_versions`),
exactly as `loader.build.build_store` does. The result is one row per plate version with the
normalised plate in clear, its 16-byte HMAC key, and the record fields the decision reads.
It is cached as Parquet (`var/bench/peers-<plates>-<seed>/register.parquet`) and checked against
the store's counts, so DuckDB and PostgreSQL decide on exactly the data the server decides on.

The batch is handed to the peers in its wire form (`WireBatch`): the packed plate blob with
offsets, the 2-byte country column and the int32 day column that the gRPC stream sends, so the
peers read byte for byte what the server reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from lez import keys as lez_keys
from lez import plates as lez_plates
from loader.build import latest_day, select_versions
from loader.config import DEFAULT_RETENTION_DAYS
from loader.extract import load_extract

SELECTION_VERSION = 2
"""Bump when `loader.build.select_versions` changes what a store holds (invalidates caches)."""

FIELDS = (
    "valid_from",
    "valid_to",
    "first_registration",
    "max_mass",
    "running_mass",
    "co2",
    "seats",
    "category",
    "kind",
    "fuel",
    "euro",
    "flags",
)
"""Record fields the peers' SQL reads (the ones the benchmark's decisions depend on)."""


@dataclass(frozen=True, slots=True)
class PeerRegister:
    path: Path  # Parquet file
    versions: int
    plates: int
    key_id: str
    prepare_s: float  # seconds to parse, purge and write it (not a peer cost: shared prep)


def peer_register(
    extract: Path, key_file: Path, out_dir: Path, *, workers: int = 2
) -> PeerRegister:
    """The peers' register table for an extract (built once, then reused)."""
    import time

    keyer = lez_keys.load_key(key_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "register.parquet"
    meta_path = out_dir / "register.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if (
            meta.get("key_id") == keyer.key_id
            and meta.get("extract_bytes") == extract.stat().st_size
            and meta.get("selection") == SELECTION_VERSION
        ):
            return PeerRegister(path, meta["versions"], meta["plates"], keyer.key_id, 0.0)
    start = time.perf_counter()
    ext = load_extract(extract, keyer, workers)
    rec = ext.records
    # exactly the rows the loader puts in the store (loader.build.select_versions)
    cutoff = latest_day(ext) - DEFAULT_RETENTION_DAYS
    rows = select_versions(ext, cutoff).rows
    rec = ext.records
    rows = np.sort(rows)  # file order: nothing depends on it, but it reads like the extract
    plates_txt = _plate_strings(ext.plates[rows])
    cols: dict[str, pa.Array] = {
        "plate": plates_txt,
        "pkey": pa.Array.from_buffers(
            pa.binary(16), len(rows), [None, pa.py_buffer(np.ascontiguousarray(ext.keys[rows]))]
        ),
    }
    for name in FIELDS:
        cols[name] = pa.array(rec[name][rows])
    table = pa.table(cols)
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)
    n_plates = len(np.unique(ext.keys[rows].view("S16").ravel()))
    meta = {
        "versions": len(rows),
        "plates": int(n_plates),
        "key_id": keyer.key_id,
        "extract_bytes": extract.stat().st_size,
        "selection": SELECTION_VERSION,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return PeerRegister(path, len(rows), n_plates, keyer.key_id, time.perf_counter() - start)


def _plate_strings(matrix: npt.NDArray[np.uint8]) -> pa.Array:
    """NUL-padded (n, w) plate matrix -> Arrow string array (vectorised)."""
    n, w = matrix.shape
    lengths = (matrix != 0).sum(axis=1).astype(np.int32)
    keep = np.arange(w)[None, :] < lengths[:, None]
    data = np.ascontiguousarray(matrix[keep])
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data.tobytes())]
    )


@dataclass(slots=True)
class Decided:
    """The decision columns of a batch, in input order: the service's and each peer's."""

    outcome: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]
    allowed_until: npt.NDArray[np.int32]
    euro: npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class WireBatch:
    """A batch exactly as the stream sends it: packed plates, 2-byte countries, int32 days."""

    data: bytes  # plate bytes, concatenated
    offsets: npt.NDArray[np.uint32]  # n + 1
    countries: bytes  # n * 2 ASCII (never empty here)
    days: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.days)

    def arrow(self) -> pa.Table:
        """The batch as an Arrow table (zero-copy over the packed plate blob)."""
        n = len(self)
        plates = pa.Array.from_buffers(
            pa.string(),
            n,
            [None, pa.py_buffer(self.offsets.astype(np.int32).tobytes()), pa.py_buffer(self.data)],
        )
        two = pa.py_buffer(np.arange(0, 2 * n + 1, 2, dtype=np.int32).tobytes())
        cty = pa.Array.from_buffers(pa.string(), n, [None, two, pa.py_buffer(self.countries)])
        table = pa.table(
            {
                "i": pa.array(np.arange(n, dtype=np.int32)),
                "plate": plates,
                "country": cty,
                "day": pa.array(self.days),
            }
        )
        # record batches of 16k rows: DuckDB scans an Arrow table in parallel by batch
        return pa.Table.from_batches(table.to_batches(max_chunksize=16384))

    def slice(self, n: int) -> WireBatch:
        end = int(self.offsets[n])
        return WireBatch(
            data=self.data[:end],
            offsets=self.offsets[: n + 1].copy(),
            countries=self.countries[: 2 * n],
            days=self.days[:n].copy(),
        )


def wire_batch(plates: list[str], countries: list[str], days: npt.NDArray[np.int32]) -> WireBatch:
    """Pack a workload batch the way the Python client packs it (clients.batch_rows)."""
    from clients.batch_rows import pack_countries, pack_plates

    packed = pack_plates(plates)
    cty = pack_countries(countries, len(plates))
    if not cty:
        cty = lez_plates.BELGIUM.encode() * len(plates)
    return WireBatch(
        data=packed.data, offsets=packed.offsets, countries=cty, days=days.astype(np.int32)
    )
