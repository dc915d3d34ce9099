"""What `make run` claims, checked: the demo fails when one of its claims is not what it saw.

- Each single check it announces ("expecting NOT_ALLOWED") must print that answer: `expect`
  reads the outcome `lez check` printed (`shown_outcome`) and ends the run with an error that
  names both when they differ (never the plate).
- The closing list of outcomes is the list of outcomes actually seen (`OutcomesSeen`), in the
  batch's decisions file and in the single checks, not the list of every outcome there is.
- A store is reused only when it is the one the demo built (`StoreStamp`): the extract it was
  built from and the snapshot the demo left it at, compared with what `lez-loader info` says
  it publishes now. A store rebuilt or changed by hand under the demo's folder is built again.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clients.cli_output import NO_END_DATE
from clients.enum_names import OUTCOME_NAMES

OPEN_ENDED: Final = "ALLOWED (open-ended)"
"""The demo's label of an ALLOWED answer without an end date."""
_FIRST_LINE: Final = re.compile(r"^.* \([A-Z]{2}\) in .* on \S+: ([A-Z_]+)(?: \(.*\))?$")


class ClaimFailed(SystemExit):
    """The demo saw something other than what it said it would show (exit status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"demo: {message}")


def shown_outcome(output: str) -> str:
    """The demo label of what `lez check` printed: the outcome of its first line, or
    OPEN_ENDED for an ALLOWED answer without an end date. ClaimFailed when no answer is there."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    match = _FIRST_LINE.match(first)
    if match is None or match.group(1) not in OUTCOME_NAMES:
        raise ClaimFailed("'lez check' printed no answer the demo can read")
    outcome = match.group(1)
    if outcome == "ALLOWED" and f"allowed until: {NO_END_DATE}" in output:
        return OPEN_ENDED
    return outcome


def expect(label: str, output: str, what: str) -> str:
    """The outcome `output` shows, when it is `label` (an ALLOWED label accepts an open-ended
    ALLOWED); else ClaimFailed naming both. `what` says which check it was (no plate)."""
    got = shown_outcome(output)
    if got == label or (label == "ALLOWED" and got == OPEN_ENDED):
        return got
    raise ClaimFailed(f"{what}: expected {label}, 'lez check' answered {got}")


@dataclass
class OutcomesSeen:
    """Outcomes the demo saw, by where it saw them."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, where: str, outcome: str) -> None:
        name = "ALLOWED" if outcome == OPEN_ENDED else outcome
        self.counts.setdefault(where, Counter())[name] += 1

    def add_decisions_file(self, where: str, path: Path) -> None:
        """Every outcome of a `lez batch` decisions file."""
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=["outcome"], column_types={"outcome": pa.string()}
            ),
        )
        counted = pc.value_counts(table.column("outcome")).to_pylist()
        for entry in counted:
            self.counts.setdefault(where, Counter())[str(entry["values"])] += int(entry["counts"])

    def names(self) -> list[str]:
        """The outcomes seen anywhere, in the contract's order."""
        seen = {name for counter in self.counts.values() for name in counter}
        return [name for name in OUTCOME_NAMES[1:] if name in seen]

    def closing_line(self) -> str:
        names = self.names()
        missing = [name for name in OUTCOME_NAMES[1:] if name not in names]
        line = f"outcomes seen: {', '.join(names) or 'none'}"
        return line + (f" (not seen in this run: {', '.join(missing)})" if missing else "")


@dataclass(frozen=True)
class StoreStamp:
    """The demo's record of the store it built: the extract's identity and the snapshot."""

    extract: str
    size: int
    mtime_ns: int
    snapshot_id: str

    @classmethod
    def of(cls, extract: Path, snapshot_id: str) -> StoreStamp:
        stat = extract.stat()
        return cls(str(extract.resolve()), stat.st_size, stat.st_mtime_ns, snapshot_id)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__))

    @classmethod
    def read(cls, path: Path) -> StoreStamp | None:
        try:
            values: dict[str, Any] = json.loads(path.read_text())
            return cls(**values)
        except (OSError, ValueError, TypeError):
            return None

    def reusable(self, extract: Path, published_snapshot: str | None) -> bool:
        """The store is the demo's: same extract, and it publishes the demo's snapshot."""
        return published_snapshot is not None and self == StoreStamp.of(extract, published_snapshot)
