"""The DIV change-feed client (docs/div-feed.md): HTTPS with mutual TLS, paging, retries, and the
conversion of row details into keyed transactions at once.

`FeedClient` reads one day's transaction list page by page and the details of transactions in
POST batches of at most 1,000 ids. Transient failures (5xx, connect/read timeouts, dropped
connections, truncated or undecodable bodies) are retried with exponential backoff and jitter
by **tenacity**: the retry policy (which errors, how many attempts, full-jitter waits, a hook
that logs each retry) is declared in one place and tested by the library, instead of a
hand-written loop whose corner cases (the last attempt, re-raising the real error, sleeping
without busy-waiting) each project gets wrong once. `404 DAY_NOT_AVAILABLE` is not an error:
`page` returns None and the sync stops there. Any other 4xx, or an answer that breaks the
contract, is a `FeedError`.

`keyed_transactions` turns row details into `KeyedTransaction`s: the plate is normalised and
keyed with the store's HMAC key as the extract loader does (`loader.extract.validate_table`:
the same plate rules, code tables, number and date rules) and the clear text is dropped right
there. A detail that cannot be used (unknown type, malformed field, a plate that does not
normalise) becomes a refusal naming the transaction id and the rule, never the plate.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pyarrow as pa
import tenacity

from lez.days import DAY_UNKNOWN, to_day
from lez.errors import FeedError
from lez.keys import PlateKeyer
from lez.vehicle import VEHICLE_DTYPE
from loader.extract import COLUMNS, validate_table
from loader.mutations import CLOSING_KINDS, FEED_TYPES, TransactionKind

TRANSACTIONS_PATH: Final = "/movementIndications/transactions"
DETAILS_PATH: Final = "/movementIndications/rowDetails"
DETAILS_BATCH: Final = 1_000
"""At most this many ids in one rowDetails POST (docs/div-feed.md)."""
DEFAULT_PAGE_SIZE: Final = 5_000
DAY_NOT_AVAILABLE: Final = "DAY_NOT_AVAILABLE"

DETAIL_FIELDS: Final = {
    "plateType": "plate_type",
    "category": "category",
    "kind": "kind",
    "bodywork": "bodywork",
    "maxMass": "max_mass",
    "runningMass": "running_mass",
    "seats": "seats",
    "fuel": "fuel",
    "euro": "euro",
    "co2": "co2",
    "powerKw": "power_kw",
    "firstRegistration": "first_registration",
    "lastRegistration": "last_registration",
    "nis": "nis",
    "status": "status",
    "electric": "electric",
}
"""Feed detail field -> extract column (docs/div-feed.md, docs/extract-format.md)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSettings:
    """Where the feed is and how to talk to it."""

    base_url: str
    ca_file: Path | None = None  # the DIV's CA (server check); None: system store
    cert_file: Path | None = None  # our client certificate (PEM)
    key_file: Path | None = None  # its private key (PEM)
    timeout: float = 30.0  # seconds, connect and read
    page_size: int = DEFAULT_PAGE_SIZE
    attempts: int = 8  # tries per request before giving up
    max_wait: float = 30.0  # seconds, cap of one backoff wait


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page of a day's transaction list: ids and types only (the plate is not kept)."""

    page: int
    total_pages: int
    items: list[tuple[str, str]]  # (transactionId, transactionType)


def tls_context(settings: FeedSettings) -> ssl.SSLContext:
    """Mutual TLS: the feed's certificate checked against the DIV's CA (default: the system's
    CAs), our client certificate presented. A missing or unreadable PEM is a `FeedError`."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
        if settings.cert_file is not None:
            context.load_cert_chain(
                str(settings.cert_file), str(settings.key_file) if settings.key_file else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise FeedError(
            f"cannot load the TLS files ({type(exc).__name__}: {exc}); check --div-ca, "
            "--div-cert and --div-key"
        ) from None
    return context


class TransientFeedError(Exception):
    """A failure that a retry may fix; never leaves this module unless retries are used up."""


Waiter = Callable[[tenacity.RetryCallState], float]


class FeedClient:
    """A synchronous client of the change feed; use as a context manager."""

    def __init__(
        self,
        settings: FeedSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        wait: Waiter | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.retries = 0
        self.http = httpx.Client(
            base_url=settings.base_url,
            verify=tls_context(settings),
            timeout=httpx.Timeout(settings.timeout),
            transport=transport,
            headers={"accept": "application/json"},
        )
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientFeedError),
            wait=wait or tenacity.wait_random_exponential(multiplier=0.5, max=settings.max_wait),
            stop=tenacity.stop_after_attempt(max(1, settings.attempts)),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def __enter__(self) -> FeedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def page(self, day: dt.date, page: int) -> FeedPage | None:
        """Page `page` of the day's list, or None when the DIV has not closed that day."""
        params = {"date": day.isoformat(), "page": page, "pageSize": self.settings.page_size}
        body = self._call("GET", TRANSACTIONS_PATH, params=params)
        if body is None:
            return None
        try:
            items = [(str(i["transactionId"]), str(i["transactionType"])) for i in body["items"]]
            total = int(body["totalPages"])
        except (KeyError, TypeError, ValueError):
            raise FeedError(
                f"{TRANSACTIONS_PATH} page {page} of {day}: the answer lacks items, "
                "transactionId, transactionType or totalPages (docs/div-feed.md)"
            ) from None
        return FeedPage(page=page, total_pages=total, items=items)

    def details(self, ids: list[str]) -> list[dict[str, Any]]:
        """Row details of transactions, requested in batches of at most 1,000 ids."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), DETAILS_BATCH):
            batch = ids[start : start + DETAILS_BATCH]
            body = self._call("POST", DETAILS_PATH, json={"transactionIds": batch})
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise FeedError(f"{DETAILS_PATH}: the answer has no items list (docs/div-feed.md)")
            out.extend(i for i in items if isinstance(i, dict))
        return out

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body; None for 404 DAY_NOT_AVAILABLE. Retries transient failures."""
        try:
            return self._retrying(self._once, method, path, **kwargs)
        except TransientFeedError as exc:
            raise FeedError(
                f"{method} {path}: {exc} after {self.settings.attempts} attempts; "
                "the feed is unreachable or failing, try again later"
            ) from None

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # timeouts, refused or dropped connections
            if "CERTIFICATE" in str(exc).upper():  # a TLS refusal: retrying will not help
                raise FeedError(
                    f"{method} {path}: the TLS handshake failed over a certificate "
                    f"({type(exc).__name__}); check --div-ca, --div-cert and --div-key"
                ) from None
            raise TransientFeedError(type(exc).__name__) from None
        status = response.status_code
        if status >= 500:
            raise TransientFeedError(f"HTTP {status}")
        try:
            body = json.loads(response.content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if status >= 400:
                body = {}
            else:  # a truncated or garbled body: fetch it again
                raise TransientFeedError("truncated or undecodable body") from None
        if status == 404 and isinstance(body, dict) and body.get("code") == DAY_NOT_AVAILABLE:
            return None
        if status >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            # the server's message is not repeated: it could quote a request value
            raise FeedError(
                f"{method} {path}: refused with HTTP {status}"
                + (f" {str(code)[:40]}" if code else "")
                + "; check --div-url and the client certificate (docs/div-feed.md)"
            )
        return body

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log(f"feed: {exc}; retry {state.attempt_number} in {wait:.1f} s")


def no_wait(state: tenacity.RetryCallState) -> float:
    """A `Waiter` that does not wait (tests)."""
    return 0.0


@dataclass(frozen=True, slots=True)
class KeyedTransaction:
    """One usable transaction: keyed, converted, no plate."""

    transaction_id: str
    kind: TransactionKind
    sequence: int
    key: bytes  # 16-byte plate key
    corrects_from: int  # day, or DAY_UNKNOWN
    record: bytes  # one VEHICLE_DTYPE record (validity fields unused)


@dataclass(slots=True)
class KeyedBatch:
    """The result of converting row details: usable transactions and refusals."""

    transactions: list[KeyedTransaction] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (transaction id, reason)
    unrecognised_codes: Counter[str] = field(default_factory=Counter)  # column -> count


def keyed_transactions(items: list[dict[str, Any]], day: dt.date, keyer: PlateKeyer) -> KeyedBatch:
    """Key and convert row details of one day; plates are dropped here."""
    out = KeyedBatch()
    usable: list[tuple[str, TransactionKind, int, int]] = []
    rows: list[dict[str, str]] = []
    for item in items:
        txid = str(item.get("transactionId", ""))[:64]
        try:
            kind, sequence, corrects_from, row = _detail_row(item, day)
        except ValueError as problem:
            out.refused.append((txid, str(problem)))
            continue
        usable.append((txid, kind, sequence, corrects_from))
        rows.append(row)
    if not rows:
        return out
    table = pa.table({c: pa.array([r[c] for r in rows], type=pa.string()) for c in COLUMNS})
    index = np.arange(len(usable), dtype=np.int64)
    checked = validate_table(table, index, np.zeros(0, dtype=np.int64), keyer, workers=1)
    del table
    for reject in checked.rejects:
        out.refused.append((usable[reject.line][0], f"field {reject.column}: {reject.rule}"))
    for column, counts in checked.unknown_codes.items():
        if counts["unrecognised"]:
            out.unrecognised_codes[column] += counts["unrecognised"]
    for at, key, record in zip(checked.lines.tolist(), checked.keys, checked.records, strict=True):
        txid, kind, sequence, corrects_from = usable[at]
        out.transactions.append(
            KeyedTransaction(
                transaction_id=txid,
                kind=kind,
                sequence=sequence,
                key=key.tobytes(),
                corrects_from=corrects_from,
                record=np.array([record], dtype=VEHICLE_DTYPE).tobytes(),
            )
        )
    return out


def _detail_row(
    item: dict[str, Any], day: dt.date
) -> tuple[TransactionKind, int, int, dict[str, str]]:
    """(kind, sequence, correctsFrom day, extract-shaped text row) of one detail; ValueError
    names what is wrong (never a value: it could be a plate)."""
    if not isinstance(item.get("transactionId"), str) or not item["transactionId"]:
        raise ValueError("transactionId missing")
    kind = FEED_TYPES.get(item.get("transactionType"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError("unknown transactionType")
    sequence = item.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise ValueError("sequence missing or not a whole number")
    if item.get("date") not in (None, day.isoformat()):
        raise ValueError("date is not the day being synced")
    plate = item.get("plate")
    if not isinstance(plate, str) or not plate:
        raise ValueError("plate missing")
    corrects_from = DAY_UNKNOWN
    raw_from = item.get("correctsFrom")
    if raw_from is not None:
        if kind is not TransactionKind.CHANGED_VEHICLE:
            raise ValueError("correctsFrom on a type that is not registrationsChangedDataVehicle")
        try:
            corrects_from = to_day(dt.date.fromisoformat(str(raw_from)))
        except ValueError:
            raise ValueError("correctsFrom is not YYYY-MM-DD") from None
    details = item.get("details")
    row = dict.fromkeys(COLUMNS, "")
    row["plate"] = plate
    row["valid_from"] = day.isoformat()
    if details is None:
        if kind not in CLOSING_KINDS:
            raise ValueError("details missing")
        return kind, sequence, corrects_from, row
    if not isinstance(details, dict):
        raise ValueError("details is not an object")
    for name, column in DETAIL_FIELDS.items():
        value = details.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"details.{name} is not text or a number")
        row[column] = str(value)
    return kind, sequence, corrects_from, row
