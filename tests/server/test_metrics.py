"""The Prometheus endpoint of an in-process server: scraped with httpx, parsed with
prometheus-client's parser, and watched move as calls are made, refused, and the store changes.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from lez.api.v1 import access_pb2 as pb
from lez.data_quality import DataQuality
from lez.keys import PlateKeyer
from lez.store.layout import StoreMeta
from server.auth import Identity, Role
from server.config import ServerConfig
from server.metrics import ExpositionCollector, ServerMetrics
from tests.server.conftest import DAY, UNKNOWN_PLATE, VEHICLES, ServerThread, build_store
from tests.server.helpers import chunk, stub

QUALITY = {
    "records": 1000,
    "missing_category": 12,
    "missing_euro": 250,
    "missing_fuel": 3,
    "derived": {"euro": 240, "plug_in_hybrid": 7},
    "unknown_codes": {"fuel": 2},
    "rejected": 5,
    "source": "build",
}
SYNCED_AT = "2025-06-02T03:00:00+00:00"
SECRET_ORGANISATION = "Stad Gent Handhaving"
SECRET_IDENTITY = "gent-handhaving-cn-0042"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """The exposition text and its samples by (name, sorted labels)."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    response.raise_for_status()
    text = response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_server(base_config: ServerConfig, keyer: PlateKeyer) -> Iterator[ServerThread]:
    build_store(base_config.store_root, keyer, data_quality=QUALITY, synced_at=SYNCED_AT)
    enforcement = Identity(
        identity=SECRET_IDENTITY,
        organisation=SECRET_ORGANISATION,
        roles=frozenset({Role.ENFORCEMENT}),
        zones=frozenset({"gent"}),
        checks_per_minute=1000,
        pairs_per_day=12,
    )
    config = replace(
        base_config, metrics_address="127.0.0.1:0", dev_identity=SECRET_IDENTITY
    ).validate()
    server = ServerThread(config, clients={SECRET_IDENTITY: enforcement})
    yield server
    server.stop()


def _port(server: ServerThread) -> int:
    assert server.app.metrics_endpoint is not None
    return server.app.metrics_endpoint.port


def _check(channel: grpc.Channel, plate: str, zone: str = "Gent") -> pb.CheckResponse:
    response: pb.CheckResponse = stub(channel).Check(
        pb.CheckRequest(plate=plate, country="BE", zone=zone, date="2025-06-02")
    )
    return response


def test_calls_pairs_and_outcomes_move(metrics_server: ServerThread) -> None:
    port = _port(metrics_server)
    _, before = scrape(port)
    with grpc.insecure_channel(metrics_server.target) as ch:
        _check(ch, VEHICLES[0].plate)  # allowed
        _check(ch, UNKNOWN_PLATE)  # not in the register
        plates = [v.plate for v in VEHICLES[:3]]
        answers = list(stub(ch).CheckStream(iter([chunk(plates, [DAY] * 3, zone="Gent")])))
    metrics_server.settle()  # a unary call's metrics follow its answer
    _, after = scrape(port)
    role = {"role": "enforcement"}

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("lez_calls_total", rpc="Check", code="OK", **role) == 2
    assert moved("lez_calls_total", rpc="CheckStream", code="OK", **role) == 1
    assert moved("lez_call_seconds_count", rpc="Check", **role) == 2
    assert moved("lez_call_seconds_count", rpc="CheckStream", **role) == 1
    assert moved("lez_call_seconds_sum", rpc="Check", **role) > 0
    assert moved("lez_pairs_total", rpc="Check", **role) == 2
    assert moved("lez_pairs_total", rpc="CheckStream", **role) == 3
    summary = answers[-1].summary
    for count in summary.outcomes:
        name = pb.Outcome.Name(count.outcome).removeprefix("OUTCOME_").lower()
        assert moved("lez_outcomes_total", rpc="CheckStream", outcome=name) == count.count
    assert sum(moved("lez_outcomes_total", rpc="Check", outcome=o) for o in _outcomes(after)) == 2
    # every flush that made records durable was timed: the two checks', the stream's chunk's
    # and its closing record's (one caller at a time: no flush covered two)
    assert moved("lez_audit_write_seconds_count") == 4


def _outcomes(samples: Samples) -> set[str]:
    return {dict(labels)["outcome"] for name, labels in samples if name == "lez_outcomes_total"}


def test_refusals_are_counted_by_reason(metrics_server: ServerThread) -> None:
    port = _port(metrics_server)
    _, before = scrape(port)
    with grpc.insecure_channel(metrics_server.target) as ch:
        with pytest.raises(grpc.RpcError) as denied:  # enforcement may not ask for fleet stats
            stub(ch).FleetStats(pb.FleetStatsRequest())
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as zone:  # a zone outside the caller's
            _check(ch, VEHICLES[0].plate, zone="Antwerpen")
        assert zone.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as invalid:
            _check(ch, VEHICLES[0].plate, zone="")
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as limited:  # 12 pairs a day
            plates = [VEHICLES[0].plate] * 20
            list(stub(ch).CheckStream(iter([chunk(plates, [DAY] * 20, zone="Gent")])))
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    metrics_server.settle()
    _, after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("lez_refusals_total", rpc="FleetStats", reason="permission_denied") == 1
    assert moved("lez_refusals_total", rpc="Check", reason="permission_denied") == 1
    assert moved("lez_refusals_total", rpc="Check", reason="invalid_request") == 1
    assert moved("lez_refusals_total", rpc="CheckStream", reason="rate_limited") == 1
    # refused calls are calls too, with the status they ended with; a role no role admits
    assert moved("lez_calls_total", rpc="FleetStats", role="none", code="PERMISSION_DENIED") == 1
    assert (
        moved("lez_calls_total", rpc="CheckStream", role="enforcement", code="RESOURCE_EXHAUSTED")
        == 1
    )


def test_served_store_and_its_data_quality(
    metrics_server: ServerThread, base_config: ServerConfig, keyer: PlateKeyer
) -> None:
    port = _port(metrics_server)
    served = metrics_server.app.holder
    assert served is not None and served.current is not None
    meta = served.current.meta
    before_scrape = time.time()
    _, samples = scrape(port)
    assert value(samples, "lez_snapshot_info", snapshot_id=meta.snapshot_id) == 1
    assert value(samples, "lez_snapshot_seq") == meta.snapshot_seq
    built = dt.datetime.fromisoformat(meta.built_at).timestamp()
    synced = dt.datetime.fromisoformat(SYNCED_AT).timestamp()
    assert value(samples, "lez_store_timestamp_seconds", event="built") == built
    assert value(samples, "lez_store_timestamp_seconds", event="synced") == synced
    assert value(samples, "lez_snapshot_age_seconds") == pytest.approx(
        before_scrape - built, abs=30
    )
    assert value(samples, "lez_seconds_since_last_sync") == pytest.approx(
        before_scrape - synced, abs=30
    )
    for figure in ("records", "missing_category", "missing_euro", "missing_fuel", "rejected"):
        assert value(samples, "lez_data_quality_records", figure=figure) == QUALITY[figure]
    derived = QUALITY["derived"]
    assert isinstance(derived, dict)
    for method, count in derived.items():
        assert value(samples, "lez_data_quality_derived_records", method=method) == count
    assert value(samples, "lez_data_quality_unknown_codes", field="fuel") == 2

    # a new build without data quality nor sync: the old figures and snapshot disappear
    old_id = meta.snapshot_id
    build_store(base_config.store_root, keyer)
    deadline = time.monotonic() + 10
    while served.current.meta.snapshot_id == old_id:
        assert time.monotonic() < deadline, "the server did not switch to the new build"
        time.sleep(0.05)
    _, samples = scrape(port)
    names = {name for name, _ in samples}
    new_id = served.current.meta.snapshot_id
    assert value(samples, "lez_snapshot_info", snapshot_id=new_id) == 1
    assert ("lez_snapshot_info", (("snapshot_id", old_id),)) not in samples
    assert "lez_data_quality_records" not in names
    assert "lez_seconds_since_last_sync" not in names
    assert "lez_snapshot_age_seconds" in names


def test_no_plate_key_or_organisation_in_the_exposition(
    metrics_server: ServerThread, keyer: PlateKeyer
) -> None:
    with grpc.insecure_channel(metrics_server.target) as ch:
        for v in VEHICLES:
            _check(ch, v.plate)
        with pytest.raises(grpc.RpcError):
            _check(ch, "1-ABC-234", zone="Antwerpen")
    metrics_server.settle()  # the last call's metrics follow its answer
    text, _ = scrape(_port(metrics_server))
    countries = np.full((len(VEHICLES), 2), list(b"BE"), dtype=np.uint8)
    from lez.plates import as_matrix, normalise_many

    norm, _ = normalise_many(as_matrix([v.plate for v in VEHICLES]), countries)
    keys = keyer.key_matrix(countries, norm)
    forbidden = [v.plate for v in VEHICLES] + ["1-ABC-234", SECRET_ORGANISATION, SECRET_IDENTITY]
    forbidden += [bytes(k).hex() for k in keys] + [bytes(k).hex()[:12] for k in keys]
    assert "lez_calls_total" in text  # the calls were counted...
    for secret in forbidden:
        assert secret not in text  # ...without a plate, key, organisation or certificate name


def test_exposition_ages_and_dropped_gauges() -> None:
    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    meta = StoreMeta(
        format_version=1,
        key_id="k",
        snapshot_id="s2",
        snapshot_seq=2,
        source_date="2026-01-01",
        built_at="2026-01-02T00:00:00+00:00",
        plates=1,
        versions=1,
        registrations=0,
        synced_at="2026-01-01T12:00:00+00:00",
        data_quality=DataQuality(records=5, source="build").to_json(),  # as the loader writes
    )
    metrics.serve_snapshot(replace(meta, snapshot_id="s1", snapshot_seq=1))
    metrics.serve_snapshot(meta)
    now = dt.datetime(2026, 1, 2, 1, tzinfo=dt.UTC).timestamp()
    out = {f.name: f for f in ExpositionCollector(registry, clock=lambda: now).collect()}
    assert out["lez_snapshot_age_seconds"].samples[0].value == 3600
    assert out["lez_seconds_since_last_sync"].samples[0].value == 13 * 3600
    assert [s.labels for s in out["lez_snapshot_info"].samples] == [{"snapshot_id": "s2"}]
    metrics.serve_snapshot(replace(meta, data_quality=None, synced_at=""))
    out = {f.name: f for f in ExpositionCollector(registry, clock=lambda: now).collect()}
    assert "lez_data_quality_records" not in out  # every figure NaN: the family is left out
    assert "lez_seconds_since_last_sync" not in out
    for family in out.values():
        assert not any(math.isnan(s.value) for s in family.samples)


def test_no_endpoint_without_an_address(server: ServerThread) -> None:
    assert server.app.metrics_endpoint is None
