"""The change-feed client (loader/feed.py) against httpx.MockTransport serving docs/div-feed.md.

Paging, de-duplication, retries on 5xx, truncated bodies and dropped connections,
DAY_NOT_AVAILABLE, refused requests, and the conversion of details into keyed transactions
without any plate left in clear.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import numpy as np
import pytest

from lez import codes
from lez.days import DAY_UNKNOWN, parse_day
from lez.errors import FeedError
from lez.keys import PlateKeyer
from lez.vehicle import VEHICLE_DTYPE
from loader.feed import FeedClient, FeedSettings, keyed_transactions, no_wait
from loader.mutations import TransactionKind

DAY = dt.date(2026, 10, 21)


def detail(n: int, plate: str, kind: str = "registrationsNew", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "transactionId": f"20261021-{n:06d}",
        "transactionType": kind,
        "date": DAY.isoformat(),
        "sequence": n,
        "plate": plate,
        "vehicleId": f"V{n:011d}",
        "correctsFrom": None,
        "details": {
            "plateType": "N",
            "category": "M1",
            "kind": "AA",
            "bodywork": "01",
            "maxMass": 1850,
            "runningMass": 1320,
            "seats": 5,
            "fuel": "01",
            "euro": "6D",
            "co2": 118,
            "powerKw": 81,
            "firstRegistration": "2026-10-21",
            "lastRegistration": "2026-10-21",
            "nis": "44021",
            "status": "A",
            "electric": "0",
        },
    }
    item.update(extra)
    return item


class Feed:
    """A scripted feed: pages of items, details by id, and faults to serve first."""

    def __init__(self, items: list[dict[str, Any]], page_size: int = 2) -> None:
        self.items = items
        self.page_size = page_size
        self.faults: list[Any] = []  # served (one each) before real answers
        self.requests: list[httpx.Request] = []
        self.repeat_last_on_next_page = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault  # type: ignore[no-any-return]
        if request.url.path == "/movementIndications/transactions":
            page = int(request.url.params["page"])
            total = (len(self.items) + self.page_size - 1) // self.page_size
            chunk = self.items[page * self.page_size : (page + 1) * self.page_size]
            if self.repeat_last_on_next_page and page > 0:
                chunk = [self.items[page * self.page_size - 1], *chunk]
            listed = [
                {k: i[k] for k in ("transactionId", "transactionType", "plate", "vehicleId")}
                for i in chunk
            ]
            return httpx.Response(
                200,
                json={
                    "date": DAY.isoformat(),
                    "type": "transactions",
                    "page": page,
                    "pageSize": self.page_size,
                    "totalPages": total,
                    "totalItems": len(self.items),
                    "items": listed,
                },
            )
        ids = json.loads(request.content)["transactionIds"]
        assert len(ids) <= 1000
        by_id = {i["transactionId"]: i for i in self.items}
        return httpx.Response(200, json={"items": [by_id[i] for i in ids if i in by_id]})


def client(feed: Feed, attempts: int = 4) -> FeedClient:
    settings = FeedSettings(base_url="https://div.test", attempts=attempts)
    return FeedClient(
        settings, transport=httpx.MockTransport(feed.handler), wait=no_wait, log=lambda _: None
    )


def read_all(c: FeedClient) -> list[str]:
    ids: list[str] = []
    page = 0
    while True:
        got = c.page(DAY, page)
        assert got is not None
        ids.extend(i for i, _ in got.items if i not in ids)
        page += 1
        if page >= got.total_pages:
            return ids


def test_paging_and_duplicates_across_pages() -> None:
    feed = Feed([detail(n, f"1-ABC-{n:03d}") for n in range(1, 6)])
    feed.repeat_last_on_next_page = True
    with client(feed) as c:
        ids = read_all(c)
        assert ids == [f"20261021-{n:06d}" for n in range(1, 6)]
        assert len(c.details(ids)) == 5


def test_details_are_requested_in_batches_of_at_most_1000() -> None:
    feed = Feed([detail(n, f"1-ABC-{n % 1000:03d}") for n in range(1, 2502)])
    with client(feed) as c:
        got = c.details([i["transactionId"] for i in feed.items])
    assert len(got) == 2501
    posts = [r for r in feed.requests if r.method == "POST"]
    assert [len(json.loads(r.content)["transactionIds"]) for r in posts] == [1000, 1000, 501]


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(503, json={"code": "UNAVAILABLE"}),
        httpx.Response(500, text="oops"),
        httpx.Response(200, content=b'{"date": "2026-10-21", "items": [{"transactionId": "2026'),
        httpx.Response(200, content=b"\xff\xfe garbage"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message"),
        httpx.ReadError("connection reset"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["503", "500", "truncated", "undecodable", "dropped", "reset", "timeout", "refused"],
)
def test_transient_failures_are_retried_then_succeed(fault: Any) -> None:
    feed = Feed([detail(1, "1-ABC-001"), detail(2, "1-ABC-002")])
    feed.faults = [fault, fault]
    with client(feed) as c:
        page = c.page(DAY, 0)
        assert c.retries == 2
    assert page is not None and [i for i, _ in page.items] == ["20261021-000001", "20261021-000002"]


def test_retries_used_up_is_a_feed_error() -> None:
    feed = Feed([detail(1, "1-ABC-001")])
    feed.faults = [httpx.Response(502)] * 3
    with client(feed, attempts=3) as c, pytest.raises(FeedError, match="after 3 attempts"):
        c.page(DAY, 0)


def test_day_not_available_ends_cleanly() -> None:
    feed = Feed([])
    feed.faults = [httpx.Response(404, json={"code": "DAY_NOT_AVAILABLE", "message": "later"})]
    with client(feed) as c:
        assert c.page(DAY, 0) is None
        assert c.retries == 0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_client_errors_fail_clearly_without_retry(status: int) -> None:
    feed = Feed([])
    feed.faults = [httpx.Response(status, json={"code": "BAD_REQUEST", "message": "1-ABC-234"})]
    with client(feed) as c, pytest.raises(FeedError, match=f"HTTP {status}") as err:
        c.page(DAY, 0)
    assert c.retries == 0
    assert "1-ABC-234" not in str(err.value)  # the server's message is never repeated


def test_details_become_keyed_transactions_with_the_extract_rules(keyer: PlateKeyer) -> None:
    items = [
        detail(1, "1-abc-234"),
        detail(2, "2-XYZ-987", "registrationsCrossedOut", details=None),
        detail(3, "1-ABC-234", "registrationsChangedDataVehicle", correctsFrom="2026-09-01"),
    ]
    items[2]["details"]["fuel"] = "14"  # unknown code: loads as UNKNOWN, counted
    batch = keyed_transactions(items, DAY, keyer)
    assert batch.refused == []
    assert batch.unrecognised_codes == {"fuel": 1}
    first, crossed, corrected = batch.transactions
    assert first.key == keyer.key("BE", "1ABC234") == corrected.key
    assert crossed.key == keyer.key("BE", "2XYZ987")
    assert first.kind is TransactionKind.NEW and crossed.kind is TransactionKind.CROSSED_OUT
    assert first.corrects_from == DAY_UNKNOWN
    assert corrected.corrects_from == parse_day("2026-09-01")
    rec = np.frombuffer(first.record, dtype=VEHICLE_DTYPE)[0]
    assert int(rec["euro"]) == codes.EURO.id_of("6D")
    assert int(rec["max_mass"]) == 1850 and int(rec["nis"]) == 44021
    assert int(np.frombuffer(corrected.record, dtype=VEHICLE_DTYPE)[0]["fuel"]) == 0


def test_bad_details_are_refused_by_transaction_id(keyer: PlateKeyer) -> None:
    bad_plate = detail(1, "1-AB$-234")
    bad_mass = detail(2, "1-ABC-235")
    bad_mass["details"]["maxMass"] = "heavy"
    unknown_type = detail(3, "1-ABC-236", "registrationsStolen")
    no_details = detail(4, "1-ABC-237", details=None)
    bad_date = detail(5, "1-ABC-238")
    bad_date["details"]["firstRegistration"] = "2026-02-30"
    good = detail(6, "1-ABC-239")
    batch = keyed_transactions(
        [bad_plate, bad_mass, unknown_type, no_details, bad_date, good], DAY, keyer
    )
    assert [t.transaction_id for t in batch.transactions] == ["20261021-000006"]
    reasons = dict(batch.refused)
    assert set(reasons) == {f"20261021-{n:06d}" for n in range(1, 6)}
    assert reasons["20261021-000001"].startswith("field plate:")
    assert reasons["20261021-000002"].startswith("field max_mass:")
    assert reasons["20261021-000003"] == "unknown transactionType"
    assert reasons["20261021-000004"] == "details missing"
    assert reasons["20261021-000005"].startswith("field first_registration:")
    text = repr(batch)
    for plate in ("AB$", "ABC-23", "ABC23"):
        assert plate not in text


def test_an_o_plate_type_in_the_feed_sets_the_oldtimer_plate_flag(keyer: PlateKeyer) -> None:
    from lez.vehicle import Flag

    items = [detail(1, "O-ABC-123"), detail(2, "1-ABC-234")]
    items[0]["details"]["plateType"] = "O"
    batch = keyed_transactions(items, DAY, keyer)
    flags = [
        int(np.frombuffer(t.record, dtype=VEHICLE_DTYPE)[0]["flags"]) for t in batch.transactions
    ]
    assert [bool(f & Flag.OLDTIMER_PLATE) for f in flags] == [True, False]
