"""Layers over an immutable base: a layered store answers exactly like a fresh build of the
merged data, publishing a layer never touches the base, layers are cumulative, compaction and
pruning keep the content, and a failed publish leaves the published store as it was."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez import plates, vehicle
from lez.days import DAY_OPEN
from lez.errors import StoreChangeError, StoreCorrupt
from lez.keys import KEY_BYTES, PlateKeyer
from lez.registrations import REGISTRATION_DTYPE
from lez.store import (
    CompactionPolicy,
    KeyedRecords,
    StoreBuilder,
    StoreMeta,
    content_digest,
    group_by_key,
    needs_compaction,
    open_store,
)
from lez.store import writer as writer_module
from lez.store.columns import empty_table, rows_for, versions_on
from lez.store.overlay import Overlay, overlay
from lez.store.reader import LmdbReader

Content = dict[bytes, np.ndarray]
"""Reference model of a vehicles table: key -> its version rows."""

RULES = {"r1": "rule text one", "r2": "rule text two"}


# -- data -------------------------------------------------------------------------------------


def _random_keys(rng: np.random.Generator, n: int) -> list[bytes]:
    """Random 16-byte keys, a few sharing their high half with another (64-bit prefix
    collisions, rare in real HMAC keys but legal)."""
    raw = rng.integers(0, 256, size=(n, KEY_BYTES), dtype=np.uint8)
    twins: list[int] = (
        rng.choice(n, size=min(n // 20, n - 1), replace=False).tolist() if n > 1 else []
    )
    for i in twins:
        raw[i, :8] = raw[(i + 1) % n, :8]
    return [bytes(row) for row in raw]


def _versions(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` consecutive, non-overlapping versions with random payloads."""
    rec = vehicle.empty(count)
    cuts = np.sort(rng.choice(np.arange(1, 20_000), size=count, replace=False))
    rec["valid_from"] = cuts
    rec["valid_to"] = np.append(cuts[1:], DAY_OPEN if rng.random() < 0.7 else 20_500)
    rec["euro"] = rng.integers(0, 12, count)
    rec["fuel"] = rng.integers(0, 8, count)
    rec["nis"] = rng.integers(10_000, 99_999, count)
    return rec


def _table(content: Content) -> KeyedRecords:
    items = sorted(content.items())
    items = [(k, v) for k, v in items if len(v)]
    if not items:
        return empty_table()
    keys = np.frombuffer(b"".join(k * len(v) for k, v in items), dtype=np.uint8).reshape(
        -1, KEY_BYTES
    )
    return group_by_key(keys, np.concatenate([v for _, v in items]))


def _changes(content: Content) -> KeyedRecords:
    """Changes as publish_changes takes them: removals are keys with no rows."""
    keys = sorted(content)
    counts = np.array([len(content[k]) for k in keys], dtype=np.uint64)
    halves = np.frombuffer(b"".join(keys), dtype=">u8").reshape(-1, 2)
    return KeyedRecords(
        key_hi=halves[:, 0].astype(np.uint64),
        key_lo=halves[:, 1].astype(np.uint64),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.uint64),
        records=np.concatenate([content[k] for k in keys])
        if keys
        else np.zeros(0, vehicle.VEHICLE_DTYPE),
    )


def _registrations(rng: np.random.Generator, keys: list[bytes]) -> KeyedRecords:
    rows = np.zeros(len(keys), dtype=REGISTRATION_DTYPE)
    rows["valid_from"] = rng.integers(0, 20_000, len(keys))
    rows["valid_to"] = rows["valid_from"] + rng.integers(1, 400, len(keys))
    rows["zone"] = rng.integers(1, 4, len(keys))
    rows["kind"] = rng.integers(1, 10, len(keys))
    matrix = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
    return group_by_key(matrix, rows)


def _meta(snapshot_id: str, seq: int = 1, key_id: str = "k1") -> StoreMeta:
    return StoreMeta(
        format_version=vehicle.FORMAT_VERSION,
        key_id=key_id,
        snapshot_id=snapshot_id,
        snapshot_seq=seq,
        source_date="2026-11-01",
        built_at="2026-11-01T00:00:00+00:00",
        plates=0,
        versions=0,
        registrations=0,
    )


def _build(root: Path, content: Content, regs: KeyedRecords, snapshot_id: str) -> Path:
    table = _table(content)
    meta = replace(
        _meta(snapshot_id),
        plates=table.size,
        versions=len(table.records),
        registrations=len(regs.records),
    )
    return StoreBuilder(root, keep=10).build(
        meta=meta, vehicles=table, registrations=regs, rulesets=RULES
    )


def _random_day_changes(
    rng: np.random.Generator, content: Content, adds: int, edits: int, removals: int
) -> Content:
    """One day of changes against `content`: new keys, new version arrays, removals."""
    existing = [k for k, v in content.items() if len(v)]
    chosen = rng.choice(len(existing), size=min(len(existing), edits + removals), replace=False)
    day: Content = {}
    for n, i in enumerate(chosen.tolist()):
        day[existing[i]] = (
            vehicle.empty(0) if n < removals else _versions(rng, int(rng.integers(1, 4)))
        )
    for key in _random_keys(rng, adds):
        day[key] = _versions(rng, int(rng.integers(1, 4)))
    return day


@pytest.fixture
def base_store(tmp_path: Path) -> Iterator[tuple[Path, Content, np.random.Generator]]:
    rng = np.random.default_rng(7)
    content = {k: _versions(rng, int(rng.integers(1, 4))) for k in _random_keys(rng, 3000)}
    root = tmp_path / "layered"
    _build(root, content, _registrations(rng, list(content)[:50]), "base")
    yield root, content, rng


# -- comparing two stores ---------------------------------------------------------------------


def _assert_same_answers(layered: LmdbReader, fresh: LmdbReader, probe: list[bytes]) -> None:
    """Every read of the Snapshot contract gives the same answer on both stores."""
    rng = np.random.default_rng(1)
    keys = np.frombuffer(b"".join(probe), dtype=np.uint8).reshape(-1, KEY_BYTES)
    days = rng.integers(-5, 21_000, len(probe)).astype(np.int32)
    with layered.snapshot() as a, fresh.snapshot() as b:
        got, want = a.vehicles_on(keys, days), b.vehicles_on(keys, days)
        assert got.known.tolist() == want.known.tolist()
        assert got.found.tolist() == want.found.tolist()
        assert got.records.tobytes() == want.records.tobytes()
        (qa, ra), (qb, rb) = a.vehicle_rows(keys), b.vehicle_rows(keys)
        assert qa.tolist() == qb.tolist() and ra.tobytes() == rb.tobytes()
        qa, ra = a.registrations_of(keys)
        qb, rb = b.registrations_of(keys)
        assert qa.tolist() == qb.tolist() and ra.tobytes() == rb.tobytes()
        for i, key in enumerate(probe[:: max(1, len(probe) // 300)]):
            assert a.versions_of(key).tobytes() == b.versions_of(key).tobytes()
            day = int(days[i * max(1, len(probe) // 300)])
            (known_a, rec_a), (known_b, rec_b) = a.vehicle_on(key, day), b.vehicle_on(key, day)
            assert known_a == known_b and (rec_a is None) == (rec_b is None)
            assert rec_a is None or rec_b is None or rec_a.tobytes() == rec_b.tobytes()
            assert a.registrations_for(key).tobytes() == b.registrations_for(key).tobytes()
        merged, whole = a.vehicles, b.vehicles
        for part in ("key_hi", "key_lo", "offsets", "records"):
            assert getattr(merged, part).tobytes() == getattr(whole, part).tobytes(), part
        assert a.vehicles.size == b.vehicles.size
        assert a.ruleset_texts() == b.ruleset_texts()
    for field in ("plates", "versions", "registrations", "rulesets"):
        assert getattr(layered.meta, field) == getattr(fresh.meta, field), field
    assert content_digest(layered) == content_digest(fresh)


def _fresh(tmp_path: Path, content: Content, regs: KeyedRecords, name: str) -> LmdbReader:
    root = tmp_path / name
    _build(root, content, regs, "fresh")
    return open_store(root)


def _apply(content: Content, day: Content) -> Content:
    out = dict(content)
    for key, rows in day.items():
        if len(rows):
            out[key] = rows
        else:
            out.pop(key, None)
    return out


# -- the promises -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_layered_store_answers_like_a_fresh_build_of_the_merged_data(
    tmp_path: Path, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    content = {k: _versions(rng, int(rng.integers(1, 4))) for k in _random_keys(rng, 2000)}
    regs = _registrations(rng, list(content)[:40])
    root = tmp_path / "layered"
    _build(root, content, regs, "base")
    day = _random_day_changes(rng, content, adds=150, edits=200, removals=60)
    # a change that shares its high half with a base key it does not replace
    twin = next(iter(content))[:8] + bytes(8)
    day[twin] = _versions(rng, 2)
    new_regs = _registrations(rng, list(day)[:30] + list(content)[:10])
    StoreBuilder(root).publish_changes(
        _changes(day), meta=_meta("layer", 2), registrations=new_regs
    )
    merged = _apply(content, day)
    layered = open_store(root)
    fresh = _fresh(tmp_path, merged, new_regs, "fresh")
    try:
        assert layered.meta.base_snapshot_id == "base" and layered.meta.layer_keys == len(day)
        absent = _random_keys(rng, 100)
        _assert_same_answers(layered, fresh, list(content) + list(day) + absent)
    finally:
        layered.close()
        fresh.close()


small_keys = st.integers(0, 11).map(lambda i: bytes([i % 3]) * 8 + bytes([0] * 7 + [i]))
"""Twelve keys over three high halves: prefix collisions everywhere."""
rows_of_key = st.integers(0, 3)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(small_keys, st.integers(1, 3), max_size=12),
    st.dictionaries(small_keys, rows_of_key, max_size=12),
    st.lists(small_keys, max_size=12),
    st.integers(0, 2**32 - 1),
)
def test_overlay_lookups_equal_the_merged_table(
    base_sizes: dict[bytes, int], layer_sizes: dict[bytes, int], queries: list[bytes], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    base = {k: _versions(rng, n) for k, n in base_sizes.items()}
    changes = {k: _versions(rng, n) if n else vehicle.empty(0) for k, n in layer_sizes.items()}
    ov = Overlay(_table(base).indexed(), overlay(empty_table(), _changes(changes), keep_empty=True))
    merged = _table(_apply(base, changes)).indexed()
    got_table = ov.merged()
    for part in ("key_hi", "key_lo", "offsets", "records"):
        assert getattr(got_table, part).tobytes() == getattr(merged, part).tobytes()
    if not queries:
        return
    keys = np.frombuffer(b"".join(queries), dtype=np.uint8).reshape(-1, KEY_BYTES)
    days = rng.integers(0, 20_000, len(queries)).astype(np.int32)
    got, want = ov.versions_on(keys, days), versions_on(merged, keys, days)
    assert got.known.tolist() == want.known.tolist()
    assert got.records.tobytes() == want.records.tobytes()
    q, rows = ov.rows_for(keys)
    wq, wrows = rows_for(merged, keys)
    assert q.tolist() == wq.tolist() and rows.tobytes() == wrows.tobytes()
    for key in queries:
        assert (
            ov.rows_of_key(key).tobytes()
            == _apply(base, changes).get(key, vehicle.empty(0)).tobytes()
        )
    counts = ov.counts()
    assert (counts.plates, counts.versions) == (merged.size, len(merged.records))


def _fingerprint(path: Path) -> tuple[int, int, str]:
    data = path / "data.mdb"
    st_ = data.stat()
    return st_.st_mtime_ns, st_.st_size, hashlib.sha256(data.read_bytes()).hexdigest()


def test_publish_changes_never_touches_the_base_and_writes_a_small_layer(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    root, content, rng = base_store
    base = root / "builds" / "base"
    before = _fingerprint(base)
    day = _random_day_changes(rng, content, adds=20, edits=40, removals=10)
    layer = StoreBuilder(root).publish_changes(_changes(day), meta=_meta("day1", 2))
    assert _fingerprint(base) == before
    assert (root / "current").resolve() == layer
    layer_bytes = (layer / "data.mdb").stat().st_size
    assert layer_bytes < (base / "data.mdb").stat().st_size / 5
    reader = open_store(root)
    try:
        assert reader.meta.base_snapshot_id == "base" and reader.meta.layer_keys == 70
        assert reader.meta.plates == len(content) + 20 - 10
    finally:
        reader.close()


def test_cumulative_layers_equal_all_changes_at_once(
    tmp_path: Path, base_store: tuple[Path, Content, np.random.Generator]
) -> None:
    root, content, rng = base_store
    other = tmp_path / "at-once"
    shutil.copytree(root, other, symlinks=True)
    days = []
    state = content
    for _ in range(3):
        day = _random_day_changes(rng, state, adds=30, edits=50, removals=15)
        days.append(day)
        state = _apply(state, day)
    # day 3 removes a key that only a layer ever held
    added_then_removed = next(k for k in days[0] if k not in content)
    days[2][added_then_removed] = vehicle.empty(0)
    state = _apply(state, {added_then_removed: vehicle.empty(0)})
    builder = StoreBuilder(root, keep=10)
    for n, day in enumerate(days, start=1):
        builder.publish_changes(_changes(day), meta=_meta(f"day{n}", n + 1))
    all_at_once: Content = {}
    for day in days:
        all_at_once.update(day)
    StoreBuilder(other).publish_changes(_changes(all_at_once), meta=_meta("all", 2))
    layered, once = open_store(root), open_store(other)
    fresh = _fresh(tmp_path, state, once.registrations.copy(), "fresh")
    try:
        assert layered.meta.base_snapshot_id == "base"  # always one base plus one layer
        assert layered.meta.layer_keys == once.meta.layer_keys
        assert layered.vehicle_columns.find_one(added_then_removed) == -1  # nothing to hide
        assert content_digest(layered) == content_digest(once) == content_digest(fresh)
        _assert_same_answers(layered, fresh, list(state) + list(all_at_once))
    finally:
        for r in (layered, once, fresh):
            r.close()


def test_compaction_keeps_the_content_and_publishes_a_base(
    tmp_path: Path, base_store: tuple[Path, Content, np.random.Generator]
) -> None:
    root, content, rng = base_store
    builder = StoreBuilder(root, keep=10)
    day = _random_day_changes(rng, content, adds=40, edits=40, removals=20)
    builder.publish_changes(_changes(day), meta=_meta("day1", 2, key_id="k1"))
    layered = open_store(root)
    digest = content_digest(layered)
    stages: list[str] = []
    compacted = builder.compact(progress=lambda stage, done, total: stages.append(stage))
    assert (root / "current").resolve() == compacted
    reader = open_store(root)
    fresh = _fresh(tmp_path, _apply(content, day), reader.registrations.copy(), "fresh")
    try:
        assert not reader.meta.is_layer and reader.meta.layer_keys == 0
        assert reader.meta.snapshot_seq == 3
        assert content_digest(reader) == digest == content_digest(fresh)
        assert "merge" in stages and "write" in stages
        # the layer's readers keep answering from their snapshot
        assert content_digest(layered) == digest
        _assert_same_answers(reader, fresh, list(content) + list(day))
    finally:
        for r in (layered, reader, fresh):
            r.close()
    # a base has nothing to fold
    assert builder.compact() == compacted
    assert (root / "current").resolve() == compacted


def test_pruning_keeps_the_base_of_the_current_layer(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    root, content, rng = base_store
    builder = StoreBuilder(root, keep=2)
    for n in range(1, 4):
        day = _random_day_changes(rng, content, adds=5, edits=5, removals=0)
        builder.publish_changes(_changes(day), meta=_meta(f"day{n}", n + 1))
    names = sorted(p.name for p in (root / "builds").iterdir())
    assert names == ["base", "day2", "day3"]
    reader = open_store(root)
    try:
        assert reader.meta.snapshot_id == "day3" and content_digest(reader)
    finally:
        reader.close()
    builder.compact(meta=_meta("base2", 5))
    builder.publish_changes(_changes({}), meta=_meta("day5", 6))
    names = sorted(p.name for p in (root / "builds").iterdir())
    assert names == ["base2", "day5"]


@pytest.mark.parametrize("where", ["_write_columns", "verify"])
def test_a_failed_publish_leaves_the_published_store_untouched(
    base_store: tuple[Path, Content, np.random.Generator],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    root, content, rng = base_store
    builder = StoreBuilder(root)
    builder.publish_changes(_changes(_random_day_changes(rng, content, 5, 5, 5)), meta=_meta("d1"))
    reader = open_store(root)
    digest = content_digest(reader)
    reader.close()

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed mid-way")

    if where == "verify":
        monkeypatch.setattr(writer_module, "verify", killed)
    else:
        monkeypatch.setattr(StoreBuilder, where, staticmethod(killed))
    day = _random_day_changes(rng, content, 5, 5, 5)
    with pytest.raises(KeyboardInterrupt):
        builder.publish_changes(_changes(day), meta=_meta("d2", 3))
    monkeypatch.undo()
    assert (root / "current").resolve().name == "d1"
    assert not (root / "builds" / "d2").exists()
    reader = open_store(root)
    try:
        assert content_digest(reader) == digest
    finally:
        reader.close()
    # the next publish clears the leftover and succeeds
    builder.publish_changes(_changes(day), meta=_meta("d2", 3))
    assert sorted(p.name for p in (root / "builds").iterdir()) == ["base", "d1", "d2"]


def test_mdb_stat_reads_a_base_and_a_layer(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    """Both kinds of build are plain LMDB environments with the same three named databases: the
    columns are the only copy of vehicles and registrations (no per-key databases)."""
    root, content, rng = base_store
    base = (root / "current").resolve()
    day = _random_day_changes(rng, content, 5, 5, 5)
    layer = StoreBuilder(root).publish_changes(_changes(day), meta=_meta("d1"))
    mdb_stat = shutil.which("mdb_stat")
    assert mdb_stat, "mdb_stat (Debian lmdb-utils) is needed: `make tools` installs it"
    for build in (base, layer):
        out = subprocess.run(
            [mdb_stat, "-a", str(build)], capture_output=True, text=True, check=True
        ).stdout
        named = sorted(line.split()[2] for line in out.splitlines() if line.startswith("Status of"))
        assert named == ["Main", "columns", "meta", "rulesets"], (build.name, named)


def test_replace_registrations_on_a_base_writes_a_layer(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    root, content, rng = base_store
    regs = _registrations(rng, list(content)[100:400])
    reader = open_store(root)
    vehicles_digest = hashlib.sha256(reader.vehicle_columns.records.tobytes()).hexdigest()
    meta = replace(reader.meta, snapshot_id="regs", snapshot_seq=2)
    reader.close()
    layer = StoreBuilder(root).replace_registrations(regs, meta)
    reader = open_store(root)
    try:
        assert reader.path == layer and reader.meta.base_snapshot_id == "base"
        assert reader.meta.layer_keys == 0 and reader.meta.registrations == 300
        with reader.snapshot() as snap:
            assert snap.registrations.records.tobytes() == regs.records.tobytes()
            merged = hashlib.sha256(snap.vehicles.records.tobytes()).hexdigest()
            assert merged == vehicles_digest
    finally:
        reader.close()
    assert (layer / "data.mdb").stat().st_size < (root / "builds/base/data.mdb").stat().st_size


def test_changes_that_cannot_be_applied_are_refused(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    root, content, rng = base_store
    builder = StoreBuilder(root)
    good = _changes(_random_day_changes(rng, content, 3, 3, 0))
    unsorted = KeyedRecords(
        key_hi=good.key_hi[::-1].copy(),
        key_lo=good.key_lo[::-1].copy(),
        offsets=good.offsets,
        records=good.records,
    )
    with pytest.raises(StoreChangeError, match="strictly increasing"):
        builder.publish_changes(unsorted, meta=_meta("bad1"))
    overlapping = _changes({next(iter(content)): _versions(rng, 2)[::-1].copy()})
    with pytest.raises(StoreChangeError, match=r"key #0 \(of 1\).*overlap"):
        builder.publish_changes(overlapping, meta=_meta("bad2"))
    with pytest.raises(StoreChangeError, match="dtype"):
        builder.publish_changes(
            replace(good, records=np.zeros(len(good.records), REGISTRATION_DTYPE)),
            meta=_meta("bad3"),
        )
    with pytest.raises(StoreChangeError, match="record format 99"):
        builder.publish_changes(good, meta=replace(_meta("bad4"), format_version=99))
    assert (root / "current").resolve().name == "base"


def test_layers_share_their_open_base(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    root, content, rng = base_store
    builder = StoreBuilder(root, keep=5)
    first = builder.publish_changes(
        _changes(_random_day_changes(rng, content, 3, 3, 3)), meta=_meta("d1")
    )
    second = builder.publish_changes(
        _changes(_random_day_changes(rng, content, 3, 3, 3)), meta=_meta("d2", 3)
    )
    one, two = LmdbReader(first), LmdbReader(second)
    assert one.base is not None and two.base is not None
    assert one.base.env is two.base.env  # opened, indexed and warmed once
    digest = content_digest(two)
    one.close()
    assert content_digest(two) == digest  # the base stays open for its other user
    two.close()


def test_a_layer_whose_base_is_gone_is_a_clear_error(
    base_store: tuple[Path, Content, np.random.Generator],
) -> None:
    root, _, _ = base_store
    layer = StoreBuilder(root).publish_changes(_changes({}), meta=_meta("d1"))
    shutil.rmtree(root / "builds" / "base")
    with pytest.raises(StoreCorrupt, match="lies over base base, which is not in"):
        LmdbReader(layer)


def test_the_compaction_policy() -> None:
    layer = replace(_meta("l"), base_snapshot_id="b", plates=1000, layer_keys=200)
    assert not needs_compaction(replace(layer, base_snapshot_id=""))
    assert not needs_compaction(layer, CompactionPolicy(max_layer_keys=200, max_layer_share=0.2))
    assert needs_compaction(layer, CompactionPolicy(max_layer_keys=199, max_layer_share=1.0))
    assert needs_compaction(layer, CompactionPolicy(max_layer_keys=10**6, max_layer_share=0.19))
    with pytest.raises(ValueError, match=r"max_layer_share 1\.5"):
        CompactionPolicy(max_layer_share=1.5)


def test_no_plate_reaches_a_layer(tmp_path: Path, keyer: PlateKeyer) -> None:
    numbers = ["1ABC234", "2XYZ999", "GABC123"]
    pm = plates.as_matrix(numbers, width=plates.PLATE_WIDTH)
    keys = keyer.key_matrix(plates.countries_matrix("BE", len(numbers)), pm)
    rec = vehicle.empty(3)
    rec["valid_from"] = [1, 2, 3]
    root = tmp_path / "store"
    meta = replace(_meta("base", key_id=keyer.key_id), plates=0)
    StoreBuilder(root).build(
        meta=meta,
        vehicles=empty_table(),
        registrations=empty_table(REGISTRATION_DTYPE),
        rulesets=RULES,
    )
    layer = StoreBuilder(root).publish_changes(
        group_by_key(keys, rec), meta=replace(meta, snapshot_id="d1")
    )
    data = (layer / "data.mdb").read_bytes()
    for number in numbers:
        assert number.encode() not in data and number.lower().encode() not in data
    reader = open_store(root)
    try:
        assert reader.meta.plates == 3
    finally:
        reader.close()


# -- verification before publishing -----------------------------------------------------------


@pytest.mark.parametrize("damage", ["keys out of order", "offsets short of the records"])
def test_a_build_whose_columns_read_back_wrong_is_not_published(
    base_store: tuple[Path, Content, np.random.Generator],
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    """The columns are the only copy of the data: verification reads them back and refuses a
    build whose keys or offsets are broken, leaving the published store as it was."""
    root, content, _rng = base_store
    published = (root / "current").resolve()
    write_columns = StoreBuilder._write_columns

    def damaged(txn: Any, env: Any, table: str, data: KeyedRecords) -> None:
        if table == "vehicles":
            if damage == "keys out of order":
                data = replace(
                    data, key_lo=data.key_lo[::-1].copy(), key_hi=data.key_hi[::-1].copy()
                )
            else:
                offsets = data.offsets.copy()
                offsets[-1] -= 1
                data = replace(data, offsets=offsets)
        write_columns(txn, env, table, data)

    monkeypatch.setattr(StoreBuilder, "_write_columns", staticmethod(damaged))
    with pytest.raises(StoreCorrupt, match="failed verification"):
        _build(root, content, empty_table(), "damaged")
    assert (root / "current").resolve() == published
    assert not (root / "builds" / "damaged").exists()
