"""A batch cut into chunks: how many pairs a chunk holds (`ChunkLimit`: the setting, else the
default capped by the server's limit) and the `ChunkSource` that hands the chunks of one batch
to its streams, lazily, and hands out again first those a failed stream gave back.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from clients.batch_rows import BatchInput, BatchRows, row_slices
from clients.request_builders import chunk_request
from clients.settings import ClientSettings
from lez.api.v1 import access_pb2 as pb


class ChunkLimit:
    """Pairs per chunk for one client: `settings.chunk_size` when set; else the default,
    capped by the server's `max_chunk_pairs` once a ServerInfo answered (0: no limit)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._server_limit: int | None = None  # None: ServerInfo not answered yet

    @property
    def needs_server_info(self) -> bool:
        """Whether the size depends on a ServerInfo not asked yet."""
        return self._settings.chunk_size is None and self._server_limit is None

    def learn(self, info: pb.ServerInfoResponse) -> None:
        self._server_limit = int(info.client.max_chunk_pairs)

    def size(self) -> int:
        if self._settings.chunk_size is not None:
            return self._settings.chunk_size
        default = self._settings.default_chunk_pairs
        return min(default, self._server_limit or default)


@dataclass(slots=True)
class SentChunk:
    """A chunk handed to a stream: its message and where its rows sit in the input."""

    chunk_id: int
    first_index: int
    count: int
    message: pb.CheckChunk


class ChunkSource:
    """Hands out the chunks of one batch to several streams (thread-safe, lazy).

    Chunks a failed stream had sent but not seen answered are given back and handed out again
    first, so a retried batch still answers every row exactly once.
    """

    def __init__(
        self, source: BatchInput, *, zone: str, ruleset: str, chunk_size: int, as_of: str = ""
    ) -> None:
        self._slices: Iterator[tuple[BatchRows, int, int]] = row_slices(source, chunk_size)
        self._zone = zone
        self._ruleset = ruleset
        self.as_of = as_of
        """The evaluation date asked (ISO text), on every chunk; "" for each read's own day."""
        self._lock = threading.Lock()
        self._retry: deque[SentChunk] = deque()
        self._next_id = 0
        self._next_index = 0
        self.exhausted = False

    def next(self) -> SentChunk | None:
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            if self.exhausted:
                return None
            try:
                rows, start, stop = next(self._slices)
            except StopIteration:
                self.exhausted = True
                return None
            msg = chunk_request(
                rows, start, stop, chunk_id=self._next_id, zone=self._zone, ruleset=self._ruleset,
                as_of=self.as_of,
            )  # fmt: skip
            sent = SentChunk(self._next_id, self._next_index, stop - start, msg)
            self._next_id += 1
            self._next_index += stop - start
            return sent

    def give_back(self, chunks: Iterable[SentChunk]) -> None:
        with self._lock:
            self._retry.extendleft(reversed(list(chunks)))

    @property
    def sent_pairs(self) -> int:
        return self._next_index

    @property
    def chunks(self) -> int:
        return self._next_id
