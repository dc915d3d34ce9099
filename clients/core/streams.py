"""The streams of one batch, without their I/O.

- `StreamCall`: one `CheckStream` call: the chunk to send first, the next to send, and the
  check of every answer against what was sent (answers come in the order chunks were sent,
  each with the rows sent; a call may not end with chunks unanswered); a wrong answer is a
  `ProtocolError`.
- `StreamAttempts`: the calls of one stream, one after another: after a failed call its
  unanswered chunks go back to the source and the retry policy says how long to wait.
- `BatchTally`: what the answers said besides decisions (audit ids, snapshots, revision).
- `StreamResults`: what the streams hand back to the caller: result chunks, and one end
  marker per stream (None, or the exception it failed with); it keeps the first failure.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

import grpc

from clients.core.chunks import ChunkSource, SentChunk
from clients.core.retry import Attempts
from clients.errors import ProtocolError
from clients.result_columns import ResultChunk, unpack_chunk
from lez.api.v1 import access_pb2 as pb

Progress = Callable[[int], None]
"""Called with the number of pairs of each result chunk as it arrives."""

StreamItem = ResultChunk | BaseException | None
"""What a stream hands back: a result chunk, or its end (None, or why it failed)."""


class BatchTally:
    """Audit ids, snapshot ids and the rule revision the answers of one batch carried
    (thread-safe: several streams record into it)."""

    def __init__(self) -> None:
        self.audit_ids: list[str] = []
        self.snapshot_ids: list[str] = []
        self.revision = ""
        self._lock = threading.Lock()

    def audited(self, audit_id: str) -> None:
        with self._lock:
            self.audit_ids.append(audit_id)

    def answered(self, msg: pb.DecisionChunk) -> None:
        with self._lock:
            self.snapshot_ids.append(msg.snapshot_id)
            self.revision = msg.ruleset_revision


class StreamCall:
    """The chunks of one CheckStream call: sent and not answered yet (`pending`, in order)."""

    def __init__(self, first: SentChunk, source: ChunkSource, tally: BatchTally) -> None:
        self.pending: deque[SentChunk] = deque([first])
        self.failed = False
        self._source = source
        self._tally = tally

    def first_message(self) -> pb.CheckChunk:
        return self.pending[0].message

    def next_message(self) -> pb.CheckChunk | None:
        """The next chunk to send on this call; None when the batch has none left."""
        sent = self._source.next()
        if sent is None:
            return None
        self.pending.append(sent)
        return sent.message

    def receive(self, msg: pb.DecisionChunk) -> ResultChunk | None:
        """The result chunk of an answer (None for the summary, which carries the audit id);
        ProtocolError when the answer does not fit what was sent."""
        if msg.HasField("summary"):
            self._tally.audited(msg.summary.audit_id)
            return None
        if not self.pending:
            raise ProtocolError("the server answered a chunk that was not sent")
        if msg.as_of != self._source.as_of:
            raise ProtocolError(
                f"the server evaluated on {msg.as_of or 'each read day'}, not on "
                f"{self._source.as_of or 'each read day'} as asked (as_of); it may be older "
                "than this client"
            )
        sent = self.pending.popleft()
        if msg.chunk_id != sent.chunk_id:
            raise ProtocolError("the server answered chunks out of order")
        try:
            part = unpack_chunk(msg, sent.first_index, sent.count)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        self._tally.answered(msg)
        return part

    def finish(self) -> None:
        """The call ended: every chunk sent must have been answered."""
        if self.pending:
            raise ProtocolError("the stream ended before every chunk was answered")

    def give_back(self) -> None:
        """The call failed: its unanswered chunks go to another attempt or stream."""
        self.failed = True
        self._source.give_back(self.pending)
        self.pending.clear()


class StreamAttempts:
    """The calls of one stream of a batch: a first call, and after each failure that may be
    retried (`wait_after`), another one with the chunks left, until one call ends well."""

    def __init__(self, source: ChunkSource, tally: BatchTally, attempts: Attempts) -> None:
        self._source = source
        self._tally = tally
        self._attempts = attempts

    def timeout(self) -> float | None:
        """The timeout of the next call: what is left of the batch's deadline."""
        return self._attempts.timeout()

    def calls(self) -> Iterator[StreamCall]:
        """The calls to make; none when the batch has no chunk left to send."""
        while True:
            first = self._source.next()
            if first is None:  # nothing (left) to send: open no call
                return
            call = StreamCall(first, self._source, self._tally)
            yield call
            if not call.failed:
                return

    def wait_after(self, call: StreamCall, failure: grpc.RpcError) -> float:
        """Gives the failed call's chunks back; the seconds to wait before the next call, or
        the failure as a client exception when it is final."""
        call.give_back()
        return self._attempts.wait_after(failure)


class StreamResults:
    """The results of a batch's streams as the caller takes them from the streams' queue:
    counts the streams still `running`, keeps the first `failure` (chunks after it are
    dropped) and reports the pairs of each chunk taken to `progress`."""

    def __init__(self, streams: int, progress: Progress | None) -> None:
        self.running = streams
        self.failure: BaseException | None = None
        self._progress = progress

    def take(self, item: StreamItem) -> ResultChunk | None:
        """The chunk to hand on, if `item` is one and no stream failed before it."""
        if item is None or isinstance(item, BaseException):
            self.running -= 1
            if isinstance(item, BaseException) and self.failure is None:
                self.failure = item
            return None
        if self.failure is not None:
            return None
        if self._progress is not None:
            self._progress(item.count)
        return item

    def drain(self, item: StreamItem) -> None:
        """While the batch is being stopped: count the streams that end, ignore their chunks."""
        if item is None or isinstance(item, BaseException):
            self.running -= 1

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure
