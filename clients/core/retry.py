"""When a call may be tried again, after how long, and until when: `Deadline` (the end of a
call or a batch), `Backoff` (exponential, full jitter, a server's RetryInfo wins) and
`Attempts`, which the clients ask after every failed attempt.

Only UNAVAILABLE (`ServerUnavailable`, `StoreNotReady`) is retried, at most
`ClientSettings.retries` times, and never past the deadline.
"""

from __future__ import annotations

import random
import time

import grpc

from clients.errors import DeadlineExceeded, LezClientError, from_rpc_error
from clients.settings import ClientSettings


class Deadline:
    """The end of a call or batch, as seconds from now (None: no deadline)."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        """Seconds left; raises DeadlineExceeded once none are (gRPC reads a timeout of 0 as
        "no deadline", so an expired deadline must never be passed on)."""
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before the answer was complete")
        return left

    def allows(self, delay: float) -> bool:
        """Whether waiting `delay` seconds still leaves time for another attempt."""
        return self.end is None or time.monotonic() + delay < self.end


class Backoff:
    """Exponential backoff with full jitter; a RetryInfo delay from the server wins."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.attempt = 0

    def next_delay(self, err: LezClientError) -> float | None:
        """Seconds to wait before the next attempt, or None when the error is final."""
        settings = self.settings
        if not err.retryable or self.attempt >= settings.retries:
            return None
        growth = settings.backoff_multiplier**self.attempt
        cap = min(settings.backoff_max_s, settings.backoff_initial_s * growth)
        self.attempt += 1
        delay = random.uniform(cap / 2, cap)
        if err.retry_after_s is not None:
            delay = max(delay, err.retry_after_s)
        return delay


class Attempts:
    """The attempts of one call (or of one batch stream) within one deadline.

    The client passes `timeout()` to each attempt; after a failed one, `wait_after` gives the
    seconds to wait before the next, or raises the client exception when there is none.
    """

    def __init__(self, settings: ClientSettings, deadline: Deadline) -> None:
        self.deadline = deadline
        self._backoff = Backoff(settings)

    @classmethod
    def of_call(cls, settings: ClientSettings, timeout: float | None) -> Attempts:
        """The attempts of a unary call: `timeout`, else the settings' unary deadline."""
        return cls(settings, Deadline(settings.timeout_s if timeout is None else timeout))

    def timeout(self) -> float | None:
        """The timeout of the next attempt (DeadlineExceeded when no time is left)."""
        return self.deadline.remaining()

    def wait_after(self, failure: grpc.RpcError) -> float:
        """Seconds to wait before trying again; raises the failure as a client exception when
        it is final (not retryable, retries used up, or the deadline would pass)."""
        err = from_rpc_error(failure)
        delay = self._backoff.next_delay(err)
        if delay is None or not self.deadline.allows(delay):
            raise err from None
        return delay
