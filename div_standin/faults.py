"""Faults the stand-in injects on demand, so a feed client's retries and checks can be tested.

A fault is armed for a number of requests (`count`) or until cleared (`count` null), at start
(`lez-div serve --fault KIND[:COUNT]`) or at run time (`POST /_standin/faults`). Each feed
request takes the first armed fault that applies to it and uses up one of its count; the
control endpoint itself is never faulted. Kinds:

- `delay` (every feed request): the answer comes after `seconds` (default 2.0);
- `500`, `502`, `503`, `504` (every feed request): that status, `{"code": "STANDIN_FAULT"}`;
- `drop` (every feed request): the connection is closed without an answer;
- `truncate` (every feed request): `Content-Length` promises the whole body, half of it is sent,
  then the connection is closed;
- `cutjson` (every feed request): a 200 whose JSON body is cut in half (`Content-Length` matches
  what is sent);
- `repeat` (key listings, page >= 1): the last item of page k-1 comes again first on page k;
- `unavailable` (requests naming a day, `date`): `404 DAY_NOT_AVAILABLE` for a generated day;
  with `date` set, only for that day.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

from lez.errors import StandinError

STATUS_KINDS: Final = ("500", "502", "503", "504")
KINDS: Final = ("delay", *STATUS_KINDS, "drop", "truncate", "cutjson", "repeat", "unavailable")
DEFAULT_DELAY: Final = 2.0

LISTING: Final = "listing"
DETAILS: Final = "details"


@dataclass(slots=True)
class Fault:
    """One armed fault; `count` None means until cleared."""

    kind: str
    count: int | None = 1
    seconds: float = DEFAULT_DELAY
    date: str | None = None

    def applies(self, request: str, page: int | None, date: str | None) -> bool:
        if self.kind == "repeat":
            return request == LISTING and page is not None and page >= 1
        if self.kind == "unavailable":
            return date is not None and (self.date is None or self.date == date)
        return True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "count": self.count}
        if self.kind == "delay":
            out["seconds"] = self.seconds
        if self.date is not None:
            out["date"] = self.date
        return out


def parse_option(text: str, delay: float = DEFAULT_DELAY) -> Fault:
    """A `--fault KIND[:COUNT]` option (COUNT a positive integer or `always`)."""
    kind, _, count_text = text.partition(":")
    count: int | None = 1
    if count_text == "always":
        count = None
    elif count_text:
        if not count_text.isdigit() or int(count_text) < 1:
            raise StandinError(f"--fault {text}: COUNT must be a positive integer or 'always'")
        count = int(count_text)
    return _checked(Fault(kind=kind, count=count, seconds=delay))


def from_json(body: object) -> Fault:
    """A fault from the control endpoint's JSON object."""
    if not isinstance(body, dict):
        raise StandinError("a fault is a JSON object with at least 'kind'")
    unknown = set(body) - {"kind", "count", "seconds", "date"}
    if unknown:
        raise StandinError(
            f"unknown fault fields {sorted(unknown)}; use kind, count, seconds, date"
        )
    count = body.get("count", 1)
    seconds = body.get("seconds", DEFAULT_DELAY)
    date = body.get("date")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise StandinError("fault 'count' must be a positive integer or null (until cleared)")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 <= seconds <= 600:
        raise StandinError("fault 'seconds' must be a number from 0 to 600")
    if date is not None and not isinstance(date, str):
        raise StandinError("fault 'date' must be a YYYY-MM-DD string")
    return _checked(
        Fault(kind=str(body.get("kind")), count=count, seconds=float(seconds), date=date)
    )


def _checked(fault: Fault) -> Fault:
    if fault.kind not in KINDS:
        raise StandinError(f"unknown fault kind {fault.kind[:20]!r}; use one of {', '.join(KINDS)}")
    return fault


class FaultPlan:
    """The armed faults, shared by the server's threads."""

    def __init__(self, faults: list[Fault] | tuple[Fault, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._faults = list(faults)

    def arm(self, faults: list[Fault], *, replace: bool = False) -> None:
        with self._lock:
            self._faults = [*([] if replace else self._faults), *faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def take(self, request: str, page: int | None = None, date: str | None = None) -> Fault | None:
        """The first armed fault that applies to this request, one use of it spent."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if not fault.applies(request, page, date):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        del self._faults[i]
                return fault
        return None
