"""One call from its first byte to its status: request id, the call's log line, its metrics, and
ending the calls still running when the server stops.

Every servicer method is wrapped by `server.status.translate_errors` (or its stream twin); the
wrapper opens a `CallRecord` with `CallObserver.open`, and closes it with `CallObserver.end`
whatever happens. In between, the servicer fills the record as it learns (the caller's role,
the zone, the snapshot, pairs, outcomes, the audit id) through `current_call()`.

- **Request id.** Taken from the caller's `x-request-id` metadata when it is sane (16 to 64
  characters of `A-Z a-z 0-9 . _ : -`; at least 16 once plate separators are removed, so it
  cannot be a plate), otherwise 16 fresh random bytes in hex. It is sent back as `x-request-id`
  metadata (a stream's in its initial metadata at once, a unary call's in its trailing
  metadata, with the answer or the error), written in the call's audit record (`request_id`)
  and in its log line: an operator follows one call from a client's error to the log and to
  the audit log.
- **Log line.** One line per call at INFO (`lez.calls`): RPC, status code, duration, request
  id, role, organisation, zone, snapshot, pairs, outcomes, reason of a refusal, audit id.
  Never a plate: the record holds counts and names only.
- **Metrics.** `server.metrics.ServerMetrics.observe_call`; the role label is the caller's role
  that admits the call (`call_role`).
- **Stopping.** `end_remaining` ends the streams still running at the end of the grace period
  with `ServerStopping` (UNAVAILABLE, retry elsewhere) at their next read of a request message
  (`server.status`), their answers so far audited. A call cut off by grpc itself instead ends
  CANCELLED for the client, and may leave a CancelledError traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import grpc

from lez.plates import PLATE_WIDTH
from server.auth import ALLOWED_ROLES, Identity, Role, Rpc
from server.metrics import ServerMetrics

log = logging.getLogger("lez.calls")

REQUEST_ID_KEY: Final = "x-request-id"
REQUEST_ID_MAX: Final = 64
REQUEST_ID_MIN: Final = 16
"""Shortest request id taken from a caller, once plate separators are removed: longer than any
plate (`lez.plates.PLATE_WIDTH`), so a plate never travels as a request id."""
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:\-]+")
_PLATE_SEPARATORS: Final = re.compile(r"[.\-]")
ROLE_ORDER: Final = (
    Role.OPERATOR,
    Role.ENFORCEMENT,
    Role.APPEALS,
    Role.DESK,
    Role.MONITORING,
    Role.INTEGRATOR,
    Role.PUBLIC,
)
"""When several of a caller's roles admit a call, its metrics carry the first of them here."""
NO_ROLE: Final = "none"
"""The role label of a call made before its caller was known or by a caller no role admits."""

assert REQUEST_ID_MIN > PLATE_WIDTH
assert set(ROLE_ORDER) == set(Role)


def request_id(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The caller's `x-request-id` when sane, else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and is_sane_request_id(value):
            return value
    return os.urandom(16).hex()  # uuid4's randomness without building a UUID object


def is_sane_request_id(value: str) -> bool:
    return (
        len(value) <= REQUEST_ID_MAX
        and _REQUEST_ID.fullmatch(value) is not None
        and len(_PLATE_SEPARATORS.sub("", value)) >= REQUEST_ID_MIN
    )


def call_role(who: Identity, rpc: Rpc) -> str:
    """The role a call is counted under: the caller's first role (in `ROLE_ORDER`) that admits
    `rpc`; `none` when none does."""
    admitted = who.roles & ALLOWED_ROLES[rpc]
    for role in ROLE_ORDER:
        if role in admitted:
            return role.name.lower()
    return NO_ROLE


@dataclass(slots=True, eq=False)
class CallRecord:
    """What is known of one call so far."""

    rpc: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    task: asyncio.Task[Any] | None = None
    role: str = NO_ROLE
    organisation: str = ""
    zone: str = ""
    snapshot_id: str = ""
    pairs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    audit_id: str = ""
    stopping: bool = False  # the server stops: end before reading more (`end_remaining`)
    awaiting_input: bool = False  # a stream waiting for its client's next message

    async def announce(self, context: grpc.aio.ServicerContext[Any, Any], *, stream: bool) -> None:
        """Give the caller the request id: a stream's at once, in its initial metadata; a unary
        call's in its trailing metadata, which travels with the answer or the error (a separate
        initial metadata costs a unary call about 0.1 ms)."""
        pair = ((REQUEST_ID_KEY, self.request_id),)
        if stream:
            await context.send_initial_metadata(pair)
        else:
            context.set_trailing_metadata(pair)

    def identified(self, who: Identity, rpc: Rpc) -> None:
        self.role = call_role(who, rpc)
        self.organisation = who.organisation

    def answered(
        self, *, zone: str, snapshot_id: str, pairs: int, outcomes: Mapping[str, int], audit_id: str
    ) -> None:
        self.zone, self.snapshot_id, self.audit_id = zone, snapshot_id, audit_id
        self.pairs = pairs
        self.outcomes = dict(outcomes)


_CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar(
    "lez_call", default=None
)


def current_call() -> CallRecord | None:
    """The call the running task handles (None outside a call, e.g. in direct tests)."""
    return _CURRENT.get()


class CallObserver:
    """Opens and closes the records of a process's calls."""

    def __init__(self, metrics: ServerMetrics | None, worker: int = 0) -> None:
        self.metrics = metrics
        self.worker = worker
        self.running: set[CallRecord] = set()

    def open(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any]) -> CallRecord:
        """A new call of the running task (its request id read from the caller's metadata)."""
        call = CallRecord(rpc=rpc, request_id=request_id(context.invocation_metadata()))
        call.task = asyncio.current_task()
        _CURRENT.set(call)
        self.running.add(call)
        return call

    def end(
        self,
        call: CallRecord,
        code: grpc.StatusCode,
        reason: str = "",
        ended_at: float | None = None,
    ) -> None:
        """The call ended with `code` (`reason`: the ErrorInfo reason of an error status), at
        `ended_at` (`time.perf_counter`; default now)."""
        self.running.discard(call)
        seconds = (time.perf_counter() if ended_at is None else ended_at) - call.started
        if self.metrics is not None:
            self.metrics.observe_call(
                rpc=call.rpc,
                role=call.role,
                code=code.name,
                seconds=seconds,
                pairs=call.pairs,
                outcomes=call.outcomes,
                reason=reason,
            )
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "event": "call",
            "rpc": call.rpc,
            "code": code.name,
            "ms": round(seconds * 1000, 3),
            "request_id": call.request_id,
            "role": call.role,
            "organisation": call.organisation,
            "worker": self.worker,
        }
        if reason:
            fields["reason"] = reason
        for name in ("zone", "snapshot_id", "pairs", "outcomes", "audit_id"):
            value = getattr(call, name)
            if value:
                fields[name] = value
        log.info("%s %s in %.1f ms", call.rpc, code.name, seconds * 1000, extra={"fields": fields})

    def end_after_answer(self, call: CallRecord, code: grpc.StatusCode, reason: str = "") -> None:
        """`end` for a unary call, at the event loop's next turn: grpc sends a unary call's
        answer (or its error) in the turn its handler returns, so the call's metrics and log
        line follow the answer instead of delaying it. Its duration ends now."""
        asyncio.get_running_loop().call_soon(self.end, call, code, reason, time.perf_counter())

    def end_remaining(self) -> int:
        """End the calls still running (the server stops); returns how many. A stream waiting
        for its client's next message is woken (its task cancelled at that wait, which the
        request reader turns into `ServerStopping`); one busy with a message ends before
        reading the next. Unary calls have nothing to wait for and finish by themselves (one
        answered whose `end_after_answer` has not run yet is counted too)."""
        for call in self.running:
            call.stopping = True
            if call.awaiting_input and call.task is not None and not call.task.done():
                call.task.cancel("the server is stopping")
        return len(self.running)
