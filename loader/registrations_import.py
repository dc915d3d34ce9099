"""Import the cities' registrations (docs/rules.md#registrations) into the published store.

File format: docs/registrations.md (CSV, one registration per line, `#` comment lines). Each row
is validated; a bad row stops the import with a `RegistrationFileError` naming the line and the
field, never the plate. Plates are normalised (`lez.plates`) and keyed with the store's HMAC key
as country + plate (`lez.keys`), so the file's plates never reach the store.

The import merges the file's rows with the registrations already in the store (identical rows
are kept once) and publishes a new snapshot through `StoreBuilder.replace_registrations`: a
small layer with the new registrations table over the register, which is never copied.
Importing the same file twice changes nothing but the snapshot id.

Lifecycle (docs/registrations.md): an optional last column `action` says what a row does: `add`
(the default, and what every row of a file without the column does), `withdraw` (remove the
registration) or `end` (end it early on `valid_until`). A registration is identified by its
plate key, zone (or region), kind and `valid_from`. An import applies its additions first, then
its withdrawals and ends, so it is idempotent: importing it again gives the same content.
"""

from __future__ import annotations

import csv
import enum
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from lez import codes
from lez.days import DAY_OPEN, parse_day
from lez.errors import InvalidPlate, LezError, RegistrationFileError
from lez.keys import KEY_BYTES, PlateKeyer
from lez.plates import normalise, normalise_country
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.rules import schema
from lez.rules.catalog import RULE_SUFFIX
from lez.store.columns import KeyedRecords, empty_table, group_by_key
from lez.store.reader import open_store
from lez.store.writer import StoreBuilder, new_snapshot_id, utc_now

COLUMNS: Final = ("plate", "country", "zone", "region", "kind", "valid_from", "valid_until", "euro")
ACTION_COLUMN: Final = "action"
"""Optional last column (docs/registrations.md); a file without it only adds."""


class Action(enum.IntEnum):
    """What a row of the file does to the registration it describes."""

    ADD = 0
    WITHDRAW = 1
    END = 2


REGIONS: Final = {"": Region.NONE, **schema.REGIONS}
"""What the region field may say: a region of the rule tables, or nothing."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did."""

    file: str
    rows_read: int
    rows_new: int  # rows not yet in the store
    rows_already_present: int
    withdrawn: int  # registrations removed by `withdraw` rows
    ended: int  # registrations shortened by `end` rows
    not_found: int  # withdraw/end rows matching no registration (e.g. already withdrawn)
    registrations_total: int
    plates_total: int
    snapshot_id: str
    build_dir: str

    def __str__(self) -> str:
        return (
            f"registrations imported from {self.file}: {self.rows_read} rows read, "
            f"{self.rows_new} new, {self.rows_already_present} already present, "
            f"{self.withdrawn} withdrawn, {self.ended} ended early, {self.not_found} to withdraw "
            f"or end not found; store now holds "
            f"{self.registrations_total} registrations for {self.plates_total} keys; "
            f"snapshot {self.snapshot_id} published at {self.build_dir}"
        )


def _fail(path: Path, line: int, field: str, problem: str) -> RegistrationFileError:
    return RegistrationFileError(f"{path}:{line}: field '{field}': {problem}")


def _zone_names(texts: dict[str, str]) -> dict[str, tuple[int, int]]:
    """{zone name or id text: (zone id, region)} of rule revisions {revision id: file text}.

    The revisions are only parsed and validated (`parse_revision`), not compiled: the import
    needs the zones' names, ids and regions, nothing of the criteria. A later revision wins.
    """
    out: dict[str, tuple[int, int]] = {}
    for rid in sorted(texts):
        for z in schema.parse_revision(texts[rid], f"{rid}{RULE_SUFFIX}", rid).zones:
            out[z.name.casefold()] = (z.id, int(z.region))
            out[str(z.id)] = (z.id, int(z.region))
    return out


def parse_registrations(
    path: Path, keyer: PlateKeyer, zones: dict[str, tuple[int, int]]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.void], npt.NDArray[np.uint8]]:
    """(keys (m, 16), rows, `Action` of each row) of a registrations file; raises
    RegistrationFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistrationFileError(f"{path}: cannot read the file: {exc}") from None
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), start=1)]
    data = [(i, line) for i, line in numbered if line.strip() and not line.lstrip().startswith("#")]
    if not data:
        raise RegistrationFileError(f"{path}: no header line; expected {','.join(COLUMNS)}")
    header_line, header = data[0]
    names = [h.strip() for h in next(csv.reader([header]))]
    columns: tuple[str, ...] = (*COLUMNS, ACTION_COLUMN)
    if names not in (list(COLUMNS), list(columns)):
        raise _fail(
            path,
            header_line,
            "header",
            f"expected exactly {','.join(COLUMNS)}, optionally followed by ,{ACTION_COLUMN}",
        )
    columns = columns[: len(names)]
    keys: list[bytes] = []
    rows = np.zeros(len(data) - 1, dtype=REGISTRATION_DTYPE)
    actions = np.zeros(len(data) - 1, dtype=np.uint8)
    for r, (line_no, line) in enumerate(data[1:]):
        values = next(csv.reader(io.StringIO(line)))
        if len(values) == len(COLUMNS) < len(columns):
            values.append("")  # the action may be left out: add
        if len(values) != len(columns):
            raise _fail(path, line_no, "*", f"expected {len(columns)} columns, got {len(values)}")
        row = dict(zip(columns, (v.strip() for v in values), strict=True))
        action = _action(path, line_no, row.get(ACTION_COLUMN, ""))
        keys.append(_key(path, line_no, row, keyer))
        _fill(path, line_no, row, rows[r : r + 1], zones, action)
        actions[r] = action
    key_matrix = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
    return key_matrix, rows, actions


def _action(path: Path, line: int, text: str) -> Action:
    name = (text or "add").upper()
    if name not in Action.__members__:
        raise _fail(path, line, ACTION_COLUMN, "expected add, withdraw, end or empty (add)")
    return Action[name]


def _key(path: Path, line: int, row: dict[str, str], keyer: PlateKeyer) -> bytes:
    try:
        country = normalise_country(row["country"] or "BE")
    except LezError:
        raise _fail(path, line, "country", "expected a two-letter ISO country code") from None
    try:
        plate = normalise(row["plate"], country)
    except InvalidPlate as exc:
        raise _fail(path, line, "plate", f"plate rejected ({exc.rule})") from None
    return bytes(keyer.key(plate.country, plate.plate))


def _fill(
    path: Path,
    line: int,
    row: dict[str, str],
    out: npt.NDArray[np.void],
    zones: dict[str, tuple[int, int]],
    action: Action = Action.ADD,
) -> None:
    kind_text = row["kind"].upper()
    if kind_text not in RegistrationKind.__members__:
        raise _fail(
            path, line, "kind", f"expected one of {', '.join(RegistrationKind.__members__)}"
        )
    kind = RegistrationKind[kind_text]
    region_text = row["region"].casefold()
    if region_text not in REGIONS:
        raise _fail(path, line, "region", f"expected {', '.join(schema.REGIONS)} or empty")
    region = REGIONS[region_text]
    zone = 0
    if row["zone"] and row["zone"] != "0":
        found = zones.get(row["zone"].casefold())
        if found is None and row["zone"].isdigit() and not zones:
            found = (int(row["zone"]), int(region))  # no rules in the store to check against
        if found is None or not 1 <= found[0] <= 0xFFFF:
            raise _fail(path, line, "zone", "unknown zone (give a zone id or name of the rules)")
        zone = found[0]
        if region != Region.NONE and found[1] != region:
            raise _fail(path, line, "region", "differs from the zone's region")
        region = Region(found[1]) if found[1] else region
    elif region == Region.NONE:
        raise _fail(path, line, "zone", "give a zone, or leave it empty and give a region")
    try:
        start = parse_day(row["valid_from"])
    except ValueError as exc:
        raise _fail(path, line, "valid_from", str(exc)) from None
    if action == Action.END and not row["valid_until"]:
        raise _fail(path, line, "valid_until", "an 'end' row gives the new last day")
    if action == Action.WITHDRAW:
        row = {**row, "valid_until": "", "euro": ""}  # identified without them
    if row["valid_until"]:
        try:
            end = parse_day(row["valid_until"]) + 1
        except ValueError as exc:
            raise _fail(path, line, "valid_until", str(exc)) from None
        if end <= start:
            raise _fail(path, line, "valid_until", "before valid_from")
    else:
        end = start + 1 if kind == RegistrationKind.DAY_PASS else DAY_OPEN
    if kind == RegistrationKind.DAY_PASS and end != start + 1 and action == Action.ADD:
        raise _fail(path, line, "valid_until", "a day pass is valid for one day")
    euro = 0
    if kind == RegistrationKind.EURO_CORRECTION and action != Action.WITHDRAW:
        if not codes.EURO.is_known(row["euro"]):
            raise _fail(path, line, "euro", "a euro-norm correction needs a known DIV euro code")
        euro = codes.EURO.id_of(row["euro"])
    elif row["euro"]:
        raise _fail(path, line, "euro", "only a EURO_CORRECTION carries a euro norm")
    out["valid_from"] = start
    out["valid_to"] = end
    out["zone"] = zone
    out["kind"] = int(kind)
    out["region"] = int(region)
    out["euro"] = euro


def row_keys(table: KeyedRecords) -> npt.NDArray[np.uint8]:
    """The (m, 16) key of every row of a table."""
    keys = np.empty((len(table.records), 2), dtype=">u8")
    offsets = table.offsets.astype(np.int64)
    counts = offsets[1:] - offsets[:-1]
    keys[:, 0] = np.repeat(table.key_hi, counts)
    keys[:, 1] = np.repeat(table.key_lo, counts)
    return keys.view(np.uint8).reshape(-1, KEY_BYTES)


@dataclass(frozen=True, slots=True)
class LifecycleCounts:
    """What the withdraw and end rows of an import did."""

    withdrawn: int = 0
    ended: int = 0
    not_found: int = 0


def withdraw_and_end(
    table: KeyedRecords,
    keys: npt.NDArray[np.uint8],
    rows: npt.NDArray[np.void],
    actions: npt.NDArray[np.uint8],
) -> tuple[KeyedRecords, LifecycleCounts]:
    """Apply the `withdraw` and `end` rows, in file order, to the registrations `table`.

    A row matches the registrations with its plate key, zone, region, kind and `valid_from`.
    `withdraw` removes them; `end` moves their end to the row's `valid_until` when that is
    earlier (it never lengthens one). A row matching nothing is counted, not refused, so that
    importing a file again (its registrations already withdrawn) is not an error.
    """
    todo = np.flatnonzero(actions != Action.ADD)
    if not len(todo):
        return table, LifecycleCounts()
    stored_keys = row_keys(table)
    records = table.records.copy()
    keep = np.ones(len(records), dtype=np.bool_)
    fields = ("zone", "region", "kind", "valid_from")
    index: dict[tuple[bytes, int, int, int, int], list[int]] = {}
    for i, ident in enumerate(zip(*(records[f].tolist() for f in fields), strict=True)):
        index.setdefault((stored_keys[i].tobytes(), *ident), []).append(i)
    withdrawn = ended = not_found = 0
    for r in todo.tolist():
        ident = (keys[r].tobytes(), *(int(rows[f][r]) for f in fields))
        live = [i for i in index.get(ident, []) if keep[i]]
        if not live:
            not_found += 1
        elif actions[r] == Action.WITHDRAW:
            keep[live] = False
            withdrawn += len(live)
        else:
            new_end = int(rows["valid_to"][r])
            shorter = [i for i in live if int(records["valid_to"][i]) > new_end]
            records["valid_to"][shorter] = new_end
            ended += len(shorter)
    merged, _ = merge(empty_table(REGISTRATION_DTYPE), stored_keys[keep], records[keep])
    return merged, LifecycleCounts(withdrawn=withdrawn, ended=ended, not_found=not_found)


def merge(
    existing: KeyedRecords, keys: npt.NDArray[np.uint8], rows: npt.NDArray[np.void]
) -> tuple[KeyedRecords, int]:
    """Union of the stored registrations and new rows (identical rows once); (table, new rows)."""
    old_key_bytes = row_keys(existing)
    pair = np.dtype([("key", "V16"), ("row", "V16")])

    def packed(k: npt.NDArray[np.uint8], r: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
        both = np.empty(len(r), dtype=pair)
        both["key"] = np.ascontiguousarray(k).view("V16").ravel()
        both["row"] = np.ascontiguousarray(r, dtype=REGISTRATION_DTYPE).view("V16").ravel()
        return both

    old = np.unique(packed(old_key_bytes, existing.records))
    new = np.unique(packed(keys, rows))
    added = int((~np.isin(new, old)).sum())
    union = np.unique(np.concatenate([old, new]))
    key_matrix = union["key"].copy().view(np.uint8).reshape(-1, KEY_BYTES)
    records = union["row"].copy().view(REGISTRATION_DTYPE)
    return group_by_key(key_matrix, records), added


def import_registrations(
    store_root: Path, path: Path, keyer: PlateKeyer, *, snapshot_id: str | None = None
) -> ImportReport:
    """Validate `path`, merge it into the store's registrations and publish a new snapshot."""
    # One open, one snapshot: the meta, the rule revisions and the registrations all come from
    # the same build, and that build is the one the new snapshot is copied from.
    reader = open_store(store_root, expected_key_id=keyer.key_id)
    try:
        source = reader.path
        meta = reader.meta
        with reader.snapshot() as snap:
            texts = snap.ruleset_texts()
            existing = snap.registrations.copy()
    finally:
        reader.close()
    keys, rows, actions = parse_registrations(path, keyer, _zone_names(texts))
    adding = actions == Action.ADD
    table, added = merge(existing, keys[adding], rows[adding])
    table, lifecycle = withdraw_and_end(table, keys, rows, actions)
    new_id = snapshot_id or new_snapshot_id()
    new_meta = replace(
        meta,
        snapshot_id=new_id,
        snapshot_seq=meta.snapshot_seq + 1,
        built_at=utc_now(),
        registrations=len(table.records),
    )

    final = StoreBuilder(store_root).replace_registrations(table, new_meta, source=source)
    return ImportReport(
        file=str(path),
        rows_read=len(rows),
        rows_new=added,
        rows_already_present=int(adding.sum()) - added,
        withdrawn=lifecycle.withdrawn,
        ended=lifecycle.ended,
        not_found=lifecycle.not_found,
        registrations_total=len(table.records),
        plates_total=table.size,
        snapshot_id=new_id,
        build_dir=str(final),
    )
