"""The server's Prometheus metrics and their one endpoint (docs/observability.md lists them).

`ServerMetrics` defines what a serving process counts: calls and their latency per RPC and role,
pairs, outcomes, refusals by reason, audit write latency, and the served store (snapshot, its
times, its data quality) as gauges. `SupervisorMetrics` counts worker restarts. Labels hold
RPC names, role names, status codes, reasons, outcome names, snapshot ids and data-quality
field names only: never a plate, a key, a certificate name or an organisation (the role says
whose traffic it is).

One endpoint serves the whole server (`MetricsEndpoint`, plain HTTP `GET /metrics`):

- one process (`--workers 1`): the process's own registry, served from a thread;
- several workers: prometheus-client's multiprocess mode. The supervisor points
  `PROMETHEUS_MULTIPROC_DIR` at a fresh directory *before* prometheus-client is imported
  (`enable_multiprocess`), each forked worker writes its values to its own files there, and the
  supervisor serves their aggregate (`MultiProcessCollector`) from its own loop, without a
  thread, between two looks at its workers. A worker that exits is marked dead
  (`mark_process_dead`), so the gauges of live workers only count; its counters stay in the
  totals.

`ExpositionCollector` adds what only the scrape time knows (the age of the snapshot, the time
since the last sync) and drops gauge values that stand for "nothing": a snapshot no longer
served, a figure the served store does not have (NaN).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client import values as prometheus_values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from lez.data_quality import DataQuality
from lez.store import StoreMeta

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CALL_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
)  # fmt: skip
"""Call latency buckets (seconds): a unary check takes about a millisecond, a stream of a day's
reads minutes."""
AUDIT_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
)  # fmt: skip
"""Audit write latency buckets (seconds): a synced record takes 0.1 to 0.3 ms on a local SSD."""
REQUEST_TIMEOUT_S: Final = 5.0
"""A scraper that sends no complete request within this time is dropped (the supervisor serves
the endpoint from its own loop and must not wait on one)."""

SNAPSHOT_INFO: Final = "lez_snapshot_info"
STORE_TIMESTAMP: Final = "lez_store_timestamp_seconds"
AGES: Final = {
    "built": ("lez_snapshot_age_seconds", "Seconds since the served snapshot was published."),
    "synced": (
        "lez_seconds_since_last_sync",
        "Seconds since the last daily sync published by the served store (absent: never "
        "synced since its build).",
    ),
}
"""Derived at scrape time from `lez_store_timestamp_seconds{event=...}`."""
DATA_QUALITY_FIGURES: Final = (
    "records",
    "missing_category",
    "missing_euro",
    "missing_fuel",
    "rejected",
)
"""The counts of the store meta's `data_quality` exported as `lez_data_quality_records`."""


def enable_multiprocess(directory: Path) -> None:
    """Make this process (and the workers it will fork) write metrics to files in `directory`.

    Must run before any metric exists; prometheus-client chooses its value class at import,
    so the class is chosen again here in case it was imported already."""
    os.environ[MULTIPROC_ENV] = str(directory)
    prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> Path | None:
    """The multiprocess directory this process writes to, None in single-process mode."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def worker_exited(pid: int) -> None:
    """A worker process ended: its live gauges no longer count (multiprocess mode only)."""
    directory = multiprocess_dir()
    if directory is not None:
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _utc_seconds(iso: str) -> float | None:
    """Seconds since the epoch of an ISO timestamp or date (UTC when no zone); None if empty or
    unreadable."""
    if not iso:
        return None
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


class _LabelledGauge:
    """A labelled gauge whose set of children is replaced as a whole: children no longer given
    become NaN (dropped from the exposition; multiprocess files cannot remove a child)."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.shown: set[tuple[str, ...]] = set()

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        for labels in self.shown - values.keys():
            self.gauge.labels(*labels).set(math.nan)
        for labels, value in values.items():
            self.gauge.labels(*labels).set(value)
        self.shown = set(values)


class ServerMetrics:
    """What one serving process counts. `registry` is where the values are kept in
    single-process mode (the endpoint serves it); in multiprocess mode the values go to files
    and the registry is not served."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.calls = Counter(
            "lez_calls",
            "Calls answered or refused, by RPC, caller role and gRPC status code.",
            ["rpc", "role", "code"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "lez_call_seconds",
            "Call duration in seconds, from the first byte handled to the status, by RPC and "
            "caller role.",
            ["rpc", "role"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.pairs = Counter(
            "lez_pairs",
            "(plate, country, day) pairs answered, by RPC and caller role.",
            ["rpc", "role"],
            registry=r,
        )
        self.outcomes = Counter(
            "lez_outcomes",
            "Answers by outcome, by RPC.",
            ["rpc", "outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "lez_refusals",
            "Calls ended by an error, by RPC and reason (the ErrorInfo reason in lower case: "
            "rate_limited, permission_denied, overloaded, invalid_request, ...).",
            ["rpc", "reason"],
            registry=r,
        )
        self.audit_write_seconds = Histogram(
            "lez_audit_write_seconds",
            "Time of one audit flush making records durable (key logs and "
            "the records written before it: one fdatasync may cover several calls), in seconds.",
            buckets=AUDIT_BUCKETS,
            registry=r,
        )
        self._snapshot = _LabelledGauge(
            Gauge(
                SNAPSHOT_INFO,
                "1 for the snapshot id a worker serves.",
                ["snapshot_id"],
                registry=r,
                multiprocess_mode="livemax",
            )
        )
        self.snapshot_seq = Gauge(
            "lez_snapshot_seq",
            "Sequence number of the served snapshot (grows with every publication).",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._store_times = _LabelledGauge(
            Gauge(
                STORE_TIMESTAMP,
                "When the served store was published (event=built) and last synced with the "
                "DIV (event=synced), seconds since the epoch.",
                ["event"],
                registry=r,
                multiprocess_mode="livemostrecent",
            )
        )
        self._quality = _LabelledGauge(
            Gauge(
                "lez_data_quality_records",
                "Data quality of the served store: vehicle versions counted (figure=records), "
                "without category, euro norm or fuel in the DIV (missing_*), rows or "
                "transactions rejected (rejected).",
                ["figure"],
                registry=r,
                multiprocess_mode="livemostrecent",
            )
        )
        self._derived = _LabelledGauge(
            Gauge(
                "lez_data_quality_derived_records",
                "Records of the served store with a value derived by enrichment, by method.",
                ["method"],
                registry=r,
                multiprocess_mode="livemostrecent",
            )
        )
        self._unknown = _LabelledGauge(
            Gauge(
                "lez_data_quality_unknown_codes",
                "Records of the served store with a code not in the code lists, by field.",
                ["field"],
                registry=r,
                multiprocess_mode="livemostrecent",
            )
        )

    def observe_call(
        self,
        *,
        rpc: str,
        role: str,
        code: str,
        seconds: float,
        pairs: int,
        outcomes: Mapping[str, int],
        reason: str,
    ) -> None:
        """One finished call."""
        self._child(self.calls, rpc, role, code).inc()
        self._child(self.call_seconds, rpc, role).observe(seconds)
        if pairs:
            self._child(self.pairs, rpc, role).inc(pairs)
        for outcome, count in outcomes.items():
            if count:
                self._child(self.outcomes, rpc, outcome.lower()).inc(count)
        if reason:
            self._child(self.refusals, rpc, reason).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once (labels() costs microseconds per call)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_audit_write(self, seconds: float) -> None:
        self.audit_write_seconds.observe(seconds)

    def serve_snapshot(self, meta: StoreMeta | None) -> None:
        """The store this process now serves (None: none)."""
        if meta is None:
            self._snapshot.replace({})
            self._store_times.replace({})
            self._quality.replace({})
            self._derived.replace({})
            self._unknown.replace({})
            return
        self._snapshot.replace({(meta.snapshot_id,): 1.0})
        self.snapshot_seq.set(meta.snapshot_seq)
        times = {("built",): _utc_seconds(meta.built_at), ("synced",): _utc_seconds(meta.synced_at)}
        self._store_times.replace({k: v for k, v in times.items() if v is not None})
        quality = DataQuality.from_json(meta.data_quality) if meta.data_quality else None
        if quality is None:  # a store built before the loader measured it
            self._quality.replace({})
            self._derived.replace({})
            self._unknown.replace({})
            return
        self._quality.replace({(n,): float(getattr(quality, n)) for n in DATA_QUALITY_FIGURES})
        self._derived.replace({(k,): float(v) for k, v in quality.derived.items()})
        self._unknown.replace({(k,): float(v) for k, v in quality.unknown_codes.items()})


class SupervisorMetrics:
    """What the supervisor of several workers counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.worker_restarts = Counter(
            "lez_worker_restarts",
            "Worker processes restarted by the supervisor after they died, by worker index.",
            ["worker"],
            registry=self.registry,
        )


class ExpositionCollector(Collector):
    """The metrics of `source` as served: gauges of nothing dropped, ages added."""

    def __init__(self, source: Collector, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        times: dict[str, float] = {}
        for family in self.source.collect():
            if family.type == "gauge":
                family.samples = [s for s in family.samples if _shown(family.name, s.value)]
                if family.name == STORE_TIMESTAMP:
                    times.update({s.labels.get("event", ""): s.value for s in family.samples})
            if family.samples or family.type != "gauge":
                yield family
        for event, (name, documentation) in AGES.items():
            if event in times:
                yield GaugeMetricFamily(name, documentation, value=max(0.0, now - times[event]))


def _shown(family: str, value: float) -> bool:
    if math.isnan(value):
        return False
    return family != SNAPSHOT_INFO or value > 0


def exposition_registry(source: Collector | None = None) -> CollectorRegistry:
    """The registry an endpoint serves: `source` (default: the multiprocess files of this
    process's multiprocess directory) through `ExpositionCollector`."""
    if source is None:
        directory = multiprocess_dir()
        if directory is None:
            raise RuntimeError(f"{MULTIPROC_ENV} is not set: no worker metrics to aggregate")
        source = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExpositionCollector(source))
    return registry


class _QuietHandler(WSGIRequestHandler):
    """Logs nothing per scrape; gives up on a scraper that does not send its request."""

    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(WSGIServer):
    allow_reuse_address = True


class MetricsEndpoint:
    """`GET /metrics` on host:port (port 0: a free one) for the collectors of `registry`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_MetricsServer", (_Server,), {"address_family": family})
        self.server: WSGIServer = make_server(
            host, port, make_wsgi_app(registry), server_class=server_class,
            handler_class=_QuietHandler,
        )  # fmt: skip
        self.port = int(self.server.server_address[1])
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.server, selectors.EVENT_READ)
        self._thread: threading.Thread | None = None

    def serve_in_thread(self) -> None:
        """Serve from a daemon thread (a process that forks no more)."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-endpoint", daemon=True
        )
        self._thread.start()

    def handle_pending(self, timeout_s: float) -> None:
        """Answer the scrapes that arrive within `timeout_s` (a loop that owns the process)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not self._selector.select(left):
                return
            self.server.handle_request()

    def detach(self) -> None:
        """In a forked child: close the inherited listening socket, leave the parent's alone."""
        self._selector.close()
        self.server.socket.close()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self._selector.close()
        self.server.server_close()
