"""The one progress display of the commands: `lez-loader` (and `lez-div`) stages, `lez batch`
pairs and `lez campaign` vehicles, drawn by tqdm.

tqdm rather than hand-written bars: it is small (no dependencies of its own), maintained,
typed (`types-tqdm`), and already does what the hand-written bars did or did not: redraw at
most every 0.1 s however often it is told, rates and remaining time in readable units, the
terminal width, one line per finished stage. `rich` draws finer bars but is a much larger
dependency for one line on stderr.

Two shapes, one look:

- `StageProgress`, callable as `progress(stage, done, total)` (`lez.store.writer.Progress`):
  one bar per stage on a terminal, left on screen when the stage ends; on anything else
  (a log, a pipe, a test) no bar but one plain line per finished stage,
  `STAGE: done in X.Y s`, as scripts and logs read it. Stages named in `byte_stages` count
  bytes (the loader's CSV read: `loader.extract.READ_STAGES`).
- `ItemProgress`, callable as `progress(n)` with the items just done (the clients' progress
  callbacks): a bar with rate toward a known total, or a running count with rate when the
  total is unknown; silent unless enabled (`lez` enables it on a terminal without
  `--no-progress`).

The bars start no monitor thread (`_Bar`): they redraw when told of progress.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, MutableMapping
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

from tqdm import tqdm

REDRAW_EVERY_S: Final = 0.1
"""A bar redraws at most this often, however often it is told about progress."""
COUNT_BAR_FORMAT: Final = (
    "{l_bar}{bar}| {count}/{count_total}{unit} [{elapsed}<{remaining}, {rate_fmt}]"
)
"""A bar of things counted: exact counts with separators (`_Bar.format_dict`), the rate in k/M/G
(the average since the start: `smoothing=0`)."""
ONE_STEP_FORMAT: Final = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]"
"""The bar of a stage told only of its start and its end (done 0 then 1 of 1)."""

if TYPE_CHECKING:
    _Tqdm = tqdm[NoReturn]
else:
    _Tqdm = tqdm


class _Bar(_Tqdm):
    """tqdm without its monitor thread (a thread that wakes every 10 s to redraw stalled bars):
    a process that forks after drawing a bar should not be multi-threaded for it."""

    monitor_interval = 0

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        """tqdm's fields for `bar_format`, and exact counts with separators: `count` and
        `count_total` ("?" when unknown)."""
        fields = super().format_dict
        total = fields["total"]
        fields["count"] = f"{fields['n']:,}"
        fields["count_total"] = "?" if total is None else f"{total:,}"
        return fields


class StageProgress:
    """Callable as progress(stage, done, total): a tqdm bar per stage on a terminal, plain
    `STAGE: done in X.Y s` lines otherwise. A stage starts at its first call and is done at
    a call with done >= total > 0; a new stage name closes the bar of the previous one."""

    def __init__(self, stream: TextIO | None = None, *, byte_stages: Collection[str] = ()) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.byte_stages = frozenset(byte_stages)
        self.stage = ""
        self.started = time.perf_counter()
        self.bar: _Bar | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self.stage:
            self.close()
            self.stage, self.started = stage, now
        finished = total > 0 and done >= total
        if not self.terminal:
            if finished:
                self.stream.write(f"{stage}: done in {now - self.started:.1f} s\n")
                self.stream.flush()
            return
        bar = self.bar
        if bar is None:
            in_bytes = stage in self.byte_stages
            bar = self.bar = _Bar(
                total=total,
                desc=stage,
                file=self.stream,
                mininterval=REDRAW_EVERY_S,
                smoothing=0,
                unit="B" if in_bytes else "",
                unit_scale=True,
                unit_divisor=1024 if in_bytes else 1000,
                dynamic_ncols=True,
                bar_format=_stage_format(in_bytes, total),
            )
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if finished:
            self.close()

    def close(self) -> None:
        """End the bar on screen, if one is drawn (the next call starts a new one)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stage_format(in_bytes: bool, total: int) -> str | None:
    """Bytes in tqdm's own format (KB/MB/GB); a stage of one step has no count or rate worth
    showing, only its time; other counts exact."""
    if in_bytes:
        return None
    return ONE_STEP_FORMAT if total == 1 else COUNT_BAR_FORMAT


class ItemProgress:
    """Callable as progress(n) with the `unit` items just done: on `stream` when enabled, a bar
    with rate toward `total`, or a running count with rate when `total` is None (`verb` says
    what happens to the items: "received"); nothing at all otherwise. `finish` ends the line."""

    def __init__(
        self,
        unit: str,
        stream: TextIO,
        *,
        enabled: bool,
        total: int | None = None,
        verb: str = "",
    ) -> None:
        self.bar: _Bar | None = None
        if not enabled:
            return
        count_format = "{count}{unit}" + (f" {verb}" if verb else "") + " [{elapsed}, {rate_fmt}]"
        self.bar = _Bar(
            total=total,
            file=stream,
            mininterval=REDRAW_EVERY_S,
            smoothing=0,
            unit=f" {unit}",
            unit_scale=True,
            dynamic_ncols=True,
            bar_format=COUNT_BAR_FORMAT if total is not None else count_format,
        )

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
