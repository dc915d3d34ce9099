"""What each copy of the decision logic and of plate normalisation costs, per item and in bulk.

The project keeps the same answer in more than one implementation only where a measured figure
says the extra copy pays for itself. This script measures those figures (in-process, one core,
no gRPC), so the module docstrings that cite them can be checked:

- decisions: `lez.rules.evaluate` on a chunk of one item and on a chunk of 100,000 items, and
  `lez.rules.decide_one` per item, for the common case (a Belgian vehicle without
  registrations) and for the rarer ones (registrations, foreign plates, unknown plates);
- plates: `lez.plates.try_normalise` per plate, `lez.plates.normalise_flat` on one plate and on
  100,000, and the native core (`PlateKeyer.normalise_and_key`, which also keys) on the same,
  with its SHA-instruction path on (the default where the CPU has it) and off (OpenSSL);
- a stream's answer: a 50,000-pair `DecisionChunk` built and serialised by protobuf, and the
  same bytes written by `server.chunk_wire`; and the check of a 50,000-pair chunk's strings
  (`server.service.check_text_lengths`) against what it did before (the message's size, then
  its fields listed, which serialises and copies the byte columns).

    .venv/bin/python -m bench.single_paths [--items 100000] [--repeat 2000]

Prints one JSON object (microseconds per item, per chunk for the stream's answer and text
check; median of 5 rounds). Not a test: figures drift
by about 10% between runs on a shared machine; the ratios are the point.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import cli_help
from bench.engine_bench import make_batch
from lez import keys, plates
from lez.decision import BatchInput, ItemInput
from lez.registrations import REGISTRATION_DTYPE
from lez.rules import decide_one, evaluate, load_catalog_dir

ROOT: Final = Path(__file__).resolve().parents[1]
ROUNDS: Final = 5


def _per_call_us(call: Callable[[], object], repeat: int) -> float:
    """Median over ROUNDS of the mean cost of one call, in microseconds."""
    call()
    rounds = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(repeat):
            call()
        rounds.append((time.perf_counter() - t0) / repeat * 1e6)
    return round(statistics.median(rounds), 2)


def _one_item(batch: BatchInput, i: int) -> BatchInput:
    """Item i of a chunk as a chunk of its own."""
    rows = batch.reg_query == i
    return BatchInput(
        records=batch.records[i : i + 1],
        found=batch.found[i : i + 1],
        known=batch.known[i : i + 1],
        days=batch.days[i : i + 1],
        belgian=batch.belgian[i : i + 1],
        dutch=batch.dutch[i : i + 1],
        invalid=batch.invalid[i : i + 1],
        reg_query=np.zeros(int(rows.sum()), dtype=np.int64),
        reg_rows=batch.reg_rows[rows],
    )


def _single_item(batch: BatchInput, i: int) -> ItemInput:
    """Item i as the single-check path's input."""
    found = bool(batch.found[i])
    return ItemInput(
        record=batch.records[i] if found else None,
        known=bool(batch.known[i]),
        day=int(batch.days[i]),
        belgian=bool(batch.belgian[i]),
        dutch=bool(batch.dutch[i]),
        registrations=np.asarray(batch.reg_rows[batch.reg_query == i], dtype=REGISTRATION_DTYPE),
    )


def decisions(items: int, repeat: int) -> dict[str, Any]:
    catalog = load_catalog_dir(ROOT / "rules")
    revision = catalog.get()
    zone = catalog.zone("Antwerpen").id
    batch = make_batch(items, seed=4)
    with_regs = set(batch.reg_query.tolist())
    kinds = {
        "belgian_vehicle": next(
            i for i in range(items) if batch.found[i] and batch.belgian[i] and i not in with_regs
        ),
        "with_registrations": next(
            i for i in sorted(with_regs) if batch.found[i] and batch.belgian[i]
        ),
        "foreign": next(i for i in range(items) if not batch.belgian[i] and i not in with_regs),
        "unknown_plate": next(i for i in range(items) if batch.belgian[i] and not batch.found[i]),
    }
    out: dict[str, Any] = {
        "chunk_us_per_item": round(
            _per_call_us(lambda: evaluate(revision, zone, batch), 3) / items, 4
        )
    }
    for name, i in kinds.items():
        one = _one_item(batch, i)
        item = _single_item(batch, i)
        out[name] = {
            "evaluate_on_one_us": _per_call_us(partial(evaluate, revision, zone, one), repeat),
            "decide_one_us": _per_call_us(partial(decide_one, revision, zone, item), repeat),
        }
    return out


def normalisation(items: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    texts = [
        f"{rng.integers(1, 3)}-{''.join(rng.choice(letters, 3))}-{rng.integers(0, 1000):03d}"
        for _ in range(items)
    ]
    data, starts, lengths = plates.flatten(texts)
    countries = np.broadcast_to(np.frombuffer(b"BE", dtype=np.uint8), (items, 2))
    one = plates.flatten(texts[:1])
    one_country = countries[:1]
    keyer = keys.PlateKeyer.from_secret(b"single-paths-bench-secret-32byte")
    plate = texts[0]
    return {
        "try_normalise_us": _per_call_us(lambda: plates.try_normalise(plate, "BE"), repeat),
        "normalise_flat_on_one_us": _per_call_us(
            lambda: plates.normalise_flat(*one, one_country), repeat
        ),
        "native_on_one_us": _per_call_us(
            lambda: keyer.normalise_and_key(*one, one_country, native=True), repeat
        ),
        "bulk_us_per_plate": {
            "try_normalise_loop": round(
                _per_call_us(lambda: [plates.try_normalise(t, "BE") for t in texts], 1) / items,
                4,
            ),
            "normalise_flat": round(
                _per_call_us(lambda: plates.normalise_flat(data, starts, lengths, countries), 3)
                / items,
                4,
            ),
            "native_normalise_and_key": round(
                _per_call_us(
                    lambda: keyer.normalise_and_key(data, starts, lengths, countries, native=True),
                    3,
                )
                / items,
                4,
            ),
            "native_normalise_and_key_through_openssl": round(
                _per_call_us(partial(_through_openssl, keyer, data, starts, lengths, countries), 3)
                / items,
                4,
            ),
            "python_normalise_and_key": round(
                _per_call_us(
                    lambda: keyer.normalise_and_key(data, starts, lengths, countries, native=False),
                    1,
                )
                / items,
                4,
            ),
        },
        "native": keys.NATIVE,
        "native_sha_instructions": _sha_instructions(),
    }


def _through_openssl(keyer: keys.PlateKeyer, *columns: Any) -> Any:
    """The native core with its direct SHA-instruction path off (OpenSSL per key)."""
    from lez import _hmac

    _hmac.accelerate(False)
    try:
        return keyer.normalise_and_key(*columns, native=True)
    finally:
        _hmac.accelerate(True)


def chunk_encoding(pairs: int, repeat: int) -> dict[str, Any]:
    """A stream chunk's answer (the columns an enforcement caller gets) to wire bytes: built as
    a `DecisionChunk` and serialised, and written by `server.chunk_wire`."""
    from lez.api.v1 import access_pb2 as pb
    from server import chunk_wire

    rng = np.random.default_rng(1)
    fields: dict[str, Any] = {
        "chunk_id": 3, "first_index": 150_000, "count": pairs,
        "outcome": rng.integers(0, 5, pairs, dtype=np.uint8).tobytes(),
        "reason": bytes(pairs), "derived": bytes(pairs), "notes": bytes(pairs),
        "allowed_until": rng.integers(0, 2**31, pairs, dtype=np.int32).tobytes(),
        "euro": rng.integers(0, 7, pairs, dtype=np.uint8).tobytes(),
        "snapshot_id": "20261204T230748Z-2cd304", "ruleset_revision": "2025-12-15",
    }  # fmt: skip
    if pb.DecisionChunk(**fields).SerializeToString() != chunk_wire.decision_chunk(fields, None):
        raise AssertionError("chunk_wire and protobuf disagree")
    from server.service import check_text_lengths

    n = max(1, repeat // 100)
    chunk = pb.CheckChunk(
        zone="Antwerpen", keys=bytes(16 * pairs), days=bytes(4 * pairs), key_id="f8f1617996317a48"
    )
    return {
        "pairs": pairs,
        "protobuf_us": _per_call_us(lambda: pb.DecisionChunk(**fields).SerializeToString(), n),
        "chunk_wire_us": _per_call_us(lambda: chunk_wire.decision_chunk(fields, None), n),
        "text_check_us": _per_call_us(lambda: check_text_lengths(chunk), n),
        "text_check_before_us": _per_call_us(lambda: (chunk.ByteSize(), chunk.ListFields()), n),
    }


def _sha_instructions() -> bool:
    """Whether the native core hashes with the CPU's SHA instructions on this machine."""
    from lez import _hmac

    return bool(_hmac.accelerate(True))


def main(argv: list[str] | None = None) -> None:
    ap = cli_help.parser("python -m bench.single_paths", __doc__)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    result = {
        "decisions": decisions(args.items, args.repeat),
        "plates": normalisation(args.items, args.repeat),
        "stream_answer": chunk_encoding(50_000, args.repeat),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
