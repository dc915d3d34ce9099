"""What observing one call costs the server: its metrics, and its log line in each format.

    python -m bench.call_observation [--calls 20000] [--rounds 5]

`server.calls.CallObserver.end` runs once per call on the event loop, after the answer: it
counts the call in `ServerMetrics` and, at INFO, writes the call's line. This bench runs it on a
typical single check's record, the log going to /dev/null, and prints the median microseconds
per call of: the metrics alone (log level WARNING), metrics and a text line, metrics and a JSON
line. Never used by the product.
"""

from __future__ import annotations

import logging
import os
import statistics
import time

import grpc

from bench import cli_help
from server.calls import CallObserver, CallRecord
from server.logs import configure_logging
from server.metrics import ServerMetrics

CASES = (
    ("metrics only", "WARNING", "text"),
    ("text line", "INFO", "text"),
    ("json line", "INFO", "json"),
)


def _per_call_us(observer: CallObserver, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call = CallRecord(
            rpc="Check",
            request_id="4bf92f3577b34da6a3ce929d0e0e4736",
            role="enforcement",
            organisation="Stad Gent",
            zone="Gent",
            snapshot_id="20261204T0300-7f3a",
            pairs=1,
            outcomes={"ALLOWED": 1},
            audit_id="c0de" * 16,
        )
        observer.end(call, grpc.StatusCode.OK)
    return (time.perf_counter() - started) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = cli_help.parser("python -m bench.call_observation", __doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    results: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    with open(os.devnull, "w") as sink:
        try:
            for _ in range(args.rounds):
                for name, level, log_format in CASES:
                    configure_logging(level, log_format, sink)
                    results[name].append(_per_call_us(CallObserver(ServerMetrics()), args.calls))
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
    for name, values in results.items():
        print(f"{name:13s} {statistics.median(values):6.1f} us per call")


if __name__ == "__main__":
    main()
