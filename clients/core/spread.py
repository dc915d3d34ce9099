"""Spreading a batch's connections over the server's worker processes.

The kernel places each connection on a worker process by a hash of its ports, so a client's
few batch connections may all land on one worker. Before its first batch (and again when a
batch wants more connections than were spread) a client asks each connection which worker
answers (`ServerInfo`) and reopens those that share a worker, then those beyond an even share of
the workers, a bounded number of rounds, only when it talks to one address (with several,
round_robin places the streams).

`SpreadProbes` is the plan, round by round: which connection to ask next and whether to reopen
it first; the client does the asking and reopening and `record`s each answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, NamedTuple

from lez.api.v1 import access_pb2 as pb

SPREAD_ATTEMPTS: Final = 16
"""Rounds of reopening batch connections that landed on an already used worker process."""

WorkerAnswer = tuple[int, int]
"""(worker, workers) as a connection's ServerInfo answered."""


def crowded(answered_by: Sequence[WorkerAnswer]) -> list[int]:
    """The batch connections to reopen so that they reach as many worker processes as they can,
    and as evenly.

    `answered_by[i]` is (worker, workers) as connection i's `ServerInfo` answered. While fewer
    workers are reached than could be, every connection that shares a worker with an earlier
    one is reopened (the kernel places the new ones afresh). Once all are reached, the
    connections beyond an even share (`ceil(connections / workers)` a worker) are reopened: a
    worker holding three of four connections holds three streams' chunks in flight, and the
    batch waits at its end for that worker alone (measured: a 3:1 spread of the 500,000-pair
    batch took 0.218 s where 2:2 spreads took 0.197-0.201 s, alternated in one run). Empty when
    the spread is as good as it gets, when the server runs one worker, or does not say (an
    older server answers 0)."""
    workers = max((n for _, n in answered_by), default=0)
    reachable = min(len(answered_by), workers)
    first: dict[int, int] = {}
    again: list[int] = []
    for i, (worker, _) in enumerate(answered_by):
        if worker in first:
            again.append(i)
        else:
            first[worker] = i
    if len(first) < reachable:
        return again
    if workers <= 1:
        return []
    share = -(-len(answered_by) // workers)
    held: dict[int, int] = {}
    beyond: list[int] = []
    for i, (worker, _) in enumerate(answered_by):
        held[worker] = held.get(worker, 0) + 1
        if held[worker] > share:
            beyond.append(i)
    return beyond


def worker_answer(info: pb.ServerInfoResponse) -> WorkerAnswer:
    """Which worker process answered a ServerInfo, and how many the server runs."""
    return int(info.worker), int(info.workers)


class Probe(NamedTuple):
    """Ask batch connection number `connection` which worker answers; `reopen` it first."""

    connection: int
    reopen: bool


class SpreadProbes:
    """The probes of one spreading of `connections` batch connections, round by round: every
    connection once, then, for at most SPREAD_ATTEMPTS rounds, only the crowded ones, reopened.
    The probes of one round are independent (the client asks them at once: each is a connection
    set-up, a TLS handshake where TLS is on, and one call); `record` each answer before taking
    the next round."""

    def __init__(self, connections: int) -> None:
        self._answered_by: list[WorkerAnswer] = [(0, 0)] * connections

    def record(self, index: int, answer: WorkerAnswer) -> None:
        self._answered_by[index] = answer

    def rounds(self) -> Iterator[list[Probe]]:
        yield [Probe(index, reopen=False) for index in range(len(self._answered_by))]
        for _ in range(SPREAD_ATTEMPTS):
            again = crowded(self._answered_by)
            if not again:
                return
            yield [Probe(index, reopen=True) for index in again]


class WorkerSpread:
    """Whether a client's batch connections need spreading before a batch on `n` of them: the
    first time `n` exceeds what was spread already, and only with a single server address."""

    def __init__(self, servers: int) -> None:
        self._single_address = servers == 1
        self._spread_over = 1

    def wanted(self, connections: int) -> bool:
        if connections <= self._spread_over or not self._single_address:
            return False
        self._spread_over = connections
        return True
