"""What `lez` prints: a single answer (text or JSON), the summary of a batch, the answer to a
recheck, the server's description, and the one readable line of an error. (The progress of a
batch or a campaign on stderr is `lez.progress.ItemProgress`, the display the loader uses too.)

Nothing here prints a plate it was not given: `print_answer` echoes the plate the person
typed, on their own terminal; error lines never quote plates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import numpy.typing as npt

from clients import errors
from clients.batchfile import BatchFile, BatchFileError
from clients.campaign_output import PlotUnavailable
from clients.decisions import CheckAnswer, RecheckAnswer, RecheckItem
from clients.enum_names import NOTE_FLAGS, OUTCOME_NAMES
from clients.result_columns import BatchSummary
from clients.settings import BYTES_PER_MIB, DEFAULT_SERVER, ClientSettings
from lez.api.v1 import access_pb2 as pb
from lez.days import DAYS_ACCEPTED

NO_END_DATE: Final = "no end date under this revision"
"""What an ALLOWED answer without an end date says where the date would be."""
UNTOLD_CAUSE: Final = (
    "give the earlier decision's rule revision and snapshot id, --ruleset and --snapshot, "
    "to tell the rules from the register"
)
"""Why a recheck whose outcome changed names no cause, and what would let it."""
AUDIT_ID_SHOWN: Final = 16
"""Characters of each audit id in a batch's text summary."""


def _date_str(value: dt.date | None) -> str:
    return value.isoformat() if value else "-"


def print_answer(plate: str, country: str, answer: CheckAnswer, out: TextIO) -> None:
    """A single check's answer as a person reads it."""
    where = f"{plate} ({country}) in {answer.zone} on {_date_str(answer.date)}"
    out.write(f"{where}: {answer.outcome}{_reason_text(answer.reason)}\n")
    if answer.instant:
        out.write(f"  read at:       {answer.instant}\n")
    if answer.notes:
        out.write(f"  notes:         {', '.join(sorted(answer.notes))}\n")
    if answer.outcome == "ALLOWED":
        until = NO_END_DATE if answer.open_ended else _date_str(answer.allowed_until)
        out.write(f"  allowed until: {until}\n")
    if answer.euro:
        derived = f" (derived: {', '.join(sorted(answer.derived))})" if answer.derived else ""
        out.write(f"  euro norm:     {answer.euro}{derived}\n")
    technical = answer.technical
    shown = ("category", "fuel", "first_registration", "max_mass_kg")
    if technical is not None and any(getattr(technical, f) is not None for f in shown):
        parts = [
            f"category {technical.category or '?'}",
            f"fuel {technical.fuel or '?'}",
            f"first registration {_date_str(technical.first_registration)}",
        ]
        if technical.max_mass_kg:
            parts.append(f"max mass {technical.max_mass_kg} kg")
        if technical.co2_g_km:
            parts.append(f"CO2 {technical.co2_g_km} g/km")
        if technical.power_kw:
            parts.append(f"{technical.power_kw} kW")
        out.write(f"  vehicle data:  {', '.join(parts)}\n")
    out.write(f"  snapshot {answer.snapshot_id}, rule revision {answer.revision}\n")


def answer_json(answer: CheckAnswer) -> dict[str, Any]:
    """A single check's answer as JSON values (dates as ISO text, flags sorted)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, frozenset):
            return sorted(value)
        return value

    out = {k: plain(getattr(answer, k)) for k in answer.__dataclass_fields__ if k != "technical"}
    if answer.technical is not None:
        out["technical"] = {
            k: plain(getattr(answer.technical, k)) for k in answer.technical.__dataclass_fields__
        }
    return out


def summary_table(summary: BatchSummary) -> list[str]:
    """A small table of outcomes with counts and shares."""
    lines = [f"  {'outcome':<22}{'pairs':>12}{'share':>9}"]
    total = max(summary.pairs, 1)
    for name in OUTCOME_NAMES[1:]:
        count = summary.outcomes.get(name, 0)
        if count:
            lines.append(f"  {name:<22}{count:>12,}{count / total:>9.1%}")
    lines.append(f"  {'total':<22}{summary.pairs:>12,}{1:>9.1%}")
    return lines


def note_counts(notes: npt.NDArray[np.uint8]) -> dict[str, int]:
    """How many pairs carry each note (`WARNING_ONLY`, `HOUR_UNKNOWN`, ...); none: {}."""
    return {
        name: int(((notes & bit) != 0).sum())
        for bit, name in NOTE_FLAGS
        if ((notes & bit) != 0).any()
    }


def notes_lines(notes: npt.NDArray[np.uint8]) -> list[str]:
    """A batch's note counts as a person reads them (nothing when no pair has a note)."""
    counts = note_counts(notes)
    if not counts:
        return []
    return ["  notes: " + ", ".join(f"{name} {count:,}" for name, count in counts.items())]


def batch_json(summary: BatchSummary, batch: BatchFile, output: Path) -> dict[str, Any]:
    """A batch's summary as JSON values."""
    return {
        "pairs": summary.pairs,
        "chunks": summary.chunks,
        "outcomes": dict(summary.outcomes),
        "seconds": round(summary.seconds, 4),
        "pairs_per_second": round(summary.pairs_per_second),
        "streams": summary.streams,
        "snapshot_ids": list(summary.snapshot_ids),
        "ruleset_revision": summary.revision,
        "audit_ids": list(summary.audit_ids),
        "as_of": summary.as_of.isoformat() if summary.as_of else None,
        "unreadable_days": batch.bad_days,
        "days_off_calendar": batch.days_off_calendar,
        "output": str(output),
    }


def batch_lines(
    summary: BatchSummary, batch: BatchFile, zone: str, read_s: float, write_s: float
) -> list[str]:
    """A batch's summary as a person reads it: timings, outcomes, snapshot and audit ids."""
    on = f" on {summary.as_of.isoformat()} (as_of)" if summary.as_of else ""
    lines = [
        f"{summary.pairs:,} pairs for zone {zone}{on} decided in {summary.seconds:.2f} s "
        f"({summary.pairs_per_second:,.0f} pairs/s over {summary.streams} connection(s)); "
        f"read {read_s:.2f} s, write {write_s:.2f} s",
        *summary_table(summary),
    ]
    if batch.bad_days:
        lines.append(
            f"  {batch.bad_days:,} row(s) had an unreadable {batch.day_column} "
            "(answered INVALID / INVALID_DAY)"
        )
        if off := batch.days_off_calendar:
            lines.append(
                f"    of which {off:,} not a day of the calendar or out of range (e.g. "
                f"2026-02-30; {DAYS_ACCEPTED}), {batch.bad_days - off:,} not written YYYY-MM-DD"
            )
    audit_ids = ", ".join(a[:AUDIT_ID_SHOWN] for a in summary.audit_ids) or "-"
    lines.append(
        f"snapshot {', '.join(summary.snapshot_ids) or '-'}, "
        f"rule revision {summary.revision or '-'}; audit id(s) {audit_ids}"
    )
    return lines


def recheck_json(answer: RecheckAnswer) -> dict[str, Any]:
    """A recheck's answer as JSON values."""
    return {
        "snapshot_id": answer.snapshot_id,
        "ruleset_revision": answer.revision,
        "mutation_watermark": answer.mutation_watermark,
        "results": [
            {
                "index": result.index,
                "previous_outcome": result.previous_outcome,
                "previous_reason": result.previous_reason,
                "current": answer_json(result.current),
                "outcome_changed": result.outcome_changed,
                "changes": list(result.changes),
            }
            for result in answer.results
        ],
    }


def recheck_lines(answer: RecheckAnswer, items: list[RecheckItem], from_file: bool) -> list[str]:
    """A recheck's answer as a person reads it: each decision (by the plate typed, or by its
    row in the file), then and now, and what changed."""
    lines = []
    for result in answer.results:
        label = f"row {result.index + 1}" if from_file else items[result.index].plate
        before = result.previous_outcome + _reason_text(result.previous_reason)
        now = result.current.outcome + _reason_text(result.current.reason)
        verdict = "CHANGED" if result.outcome_changed else "unchanged"
        if result.changes:
            why = f"what changed: {', '.join(result.changes)}"
        elif result.outcome_changed:  # the server names a cause only when it knows it
            why = f"the answer differs; what changed cannot be told ({UNTOLD_CAUSE})"
        else:
            why = "what changed: nothing relevant"
        lines.append(f"{label}: then {before} -> now {now}: {verdict}; {why}")
    lines.append(
        f"current snapshot {answer.snapshot_id}, rule revision {answer.revision}, "
        f"last mutation {answer.mutation_watermark or '-'}"
    )
    return lines


def _reason_text(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def _limit_text(value: int) -> str:
    return f"{value:,}" if value else "unlimited"


def info_lines(info: pb.ServerInfoResponse, servers: tuple[str, ...]) -> list[str]:
    """What the server serves and what this client may do, as a person reads it."""
    caller = info.client
    roles = ", ".join(pb.Role.Name(r).removeprefix("ROLE_").lower() for r in caller.roles)
    worker = f", worker {info.worker + 1} of {info.workers} answered" if info.workers > 1 else ""
    zones = ", ".join(f"{z.name} (id {z.id}, {z.region.lower()})" for z in info.zones)
    message_mib = caller.max_message_bytes / BYTES_PER_MIB
    return [
        f"server {info.server_version} at {', '.join(servers)}{worker}",
        f"snapshot      {info.snapshot_id} (#{info.snapshot_seq}), extract of "
        f"{info.source_date}, built {info.built_at}",
        f"last mutation {info.mutation_watermark or '-'}",
        f"key id        {info.key_id}",
        f"rules         {info.ruleset_revision} (loaded: {', '.join(info.ruleset_revisions)})",
        f"zones         {zones}",
        f"this client   {caller.organisation}; roles {roles or 'none'}; "
        f"zones {', '.join(caller.zones) or 'all'}",
        f"limits        checks/min {_limit_text(caller.calls_per_minute)}, pairs/day "
        f"{_limit_text(caller.pairs_per_day)}, pairs/chunk {caller.max_chunk_pairs:,}, "
        f"recheck items {caller.max_recheck_items:,}, message {message_mib:.0f} MiB",
    ] + (data_quality_lines(info.data_quality) if info.HasField("data_quality") else [])


def _share(count: int, total: int) -> str:
    return f"{count:,} ({100 * count / total:.1f}%)" if total else f"{count:,}"


def _by_name(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items())) or "none"


def data_quality_lines(quality: pb.DataQuality) -> list[str]:
    """The data quality of the served store (the server sends it to operators only)."""
    total = quality.records
    return [
        f"data quality  {total:,} records ({quality.source or 'source not given'}); missing "
        f"category {_share(quality.missing_category, total)}, euro "
        f"{_share(quality.missing_euro, total)}, fuel {_share(quality.missing_fuel, total)}",
        f"              derived: {_by_name(quality.derived)}; unknown codes: "
        f"{_by_name(quality.unknown_codes)}; rejected {quality.rejected:,}",
    ]


def error_line(exc: BaseException, settings: ClientSettings | None) -> str:
    """The one line a person sees for an error, with what to do about it."""
    where = ", ".join(settings.servers) if settings else DEFAULT_SERVER
    if isinstance(exc, errors.ServerUnavailable):
        return (
            f"no LEZ server answers at {where} ({exc.message}); is it running? "
            "(start one with 'lez-server serve', or give --server HOST:PORT)"
        )
    if isinstance(exc, errors.StoreNotReady):
        return f"the server at {where} has no register loaded yet; try again in a moment"
    if isinstance(exc, errors.DeadlineExceeded):
        return f"{exc.message}; give more time with --timeout SECONDS"
    if isinstance(exc, errors.RateLimited):
        wait = f" (retry in about {exc.retry_after_s:.0f} s)" if exc.retry_after_s else ""
        return f"quota used up: {exc.message}{wait}"
    if isinstance(exc, errors.UnknownZone):
        return f"{exc.message} (see 'lez info')"
    if isinstance(exc, errors.PermissionDenied):
        return f"not allowed: {exc.message}"
    if isinstance(exc, errors.Unauthenticated):
        return (
            f"the server did not accept this client: {exc.message} "
            "(check --ca/--cert/--key and the server's clients file)"
        )
    if isinstance(exc, errors.InternalError):
        return f"the server failed: {exc.message}"
    if isinstance(exc, errors.LezClientError):
        return exc.message
    if isinstance(exc, BatchFileError | PlotUnavailable):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}); set LEZ_DEBUG=1 for details"
