"""The HTTPS server: mutual TLS, paging, details, errors and every fault kind, seen from httpx."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
from pathlib import Path

import httpx
import pytest

from div_standin import feed
from div_standin.generator import GenerationResult
from div_standin.server import MAX_BATCH_IDS
from tests.div_standin.conftest import Running, serving

LIST = "/movementIndications/"
DETAILS = "/movementIndications/rowDetails"


def _day(generated: GenerationResult, n: int = 0) -> tuple[str, list[feed.Item]]:
    date = generated.days[n].date
    return date.isoformat(), feed.read_day(generated.feed_dir, date)


def _all_pages(client: httpx.Client, kind: str, date: str, size: int) -> list[dict[str, str]]:
    first = client.get(f"{LIST}{kind}", params={"date": date, "page": 0, "pageSize": size}).json()
    items = list(first["items"])
    for page in range(1, first["totalPages"]):
        answer = client.get(f"{LIST}{kind}", params={"date": date, "page": page, "pageSize": size})
        assert answer.status_code == 200
        items += answer.json()["items"]
    assert len(items) == first["totalItems"]
    return items


def test_a_client_without_certificate_is_refused(standin: Running, certs: Path) -> None:
    no_cert = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with (
        httpx.Client(base_url=standin.url, verify=no_cert, timeout=5) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.get(f"{LIST}transactions", params={"date": "2026-01-01"})
    with standin.client() as client:  # the same request with the certificate is answered
        assert client.get(f"{LIST}transactions", params={"date": "2026-01-01"}).status_code == 404


def test_paging_covers_every_transaction_once(
    standin: Running, generated: GenerationResult
) -> None:
    date, items = _day(generated)
    with standin.client() as client:
        listed = _all_pages(client, feed.ALL, date, size=7)
        assert [i["transactionId"] for i in listed] == [i["transactionId"] for i in items]
        assert listed[0] == {k: items[0][k] for k in listed[0]}
        per_type = [
            i for kind in feed.TRANSACTION_TYPES for i in _all_pages(client, kind, date, 50)
        ]
        assert sorted(i["transactionId"] for i in per_type) == sorted(
            i["transactionId"] for i in items
        )
        assert all(
            i["transactionType"] == k
            for k in feed.TRANSACTION_TYPES
            for i in _all_pages(client, k, date, 50)
        )
        past_end = client.get(f"{LIST}{feed.ALL}", params={"date": date, "page": 999}).json()
        assert past_end["items"] == [] and past_end["totalItems"] == len(items)


def test_row_details_by_id_batch_and_plate(standin: Running, generated: GenerationResult) -> None:
    date, items = _day(generated, 1)
    target = next(i for i in items if i["plate"] != "!!")
    with standin.client() as client:
        one = client.get(DETAILS, params={"transactionId": target["transactionId"]}).json()
        assert one["items"] == [target]
        ids = [i["transactionId"] for i in items[:5]] + ["20991231-000001", "nonsense"]
        batch = client.post(DETAILS, json={"transactionIds": ids}).json()
        assert batch["items"] == items[:5]
        lower = target["plate"].lower().replace("-", " ")
        by_plate = client.get(DETAILS, params={"plate": lower, "date": date}).json()
        assert target in by_plate["items"]
        assert all(i["plate"] == target["plate"] for i in by_plate["items"])
        gone = client.get(DETAILS, params={"plate": target["plate"], "date": "2099-01-01"})
        assert gone.status_code == 404 and gone.json()["code"] == "DAY_NOT_AVAILABLE"


def test_a_day_not_generated_is_not_available(
    standin: Running, generated: GenerationResult
) -> None:
    after = generated.days[-1].date + dt.timedelta(days=1)
    with standin.client() as client:
        answer = client.get(f"{LIST}registrationsNew", params={"date": after.isoformat()})
    assert answer.status_code == 404
    assert answer.json()["code"] == "DAY_NOT_AVAILABLE"


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", f"{LIST}transactions", {}, None),
        ("GET", f"{LIST}transactions", {"date": "2026-13-01"}, None),
        ("GET", f"{LIST}transactions", {"date": "2026-10-01", "page": "-1"}, None),
        ("GET", f"{LIST}transactions", {"date": "2026-10-01", "pageSize": "0"}, None),
        ("GET", f"{LIST}transactions", {"date": "2026-10-01", "pageSize": "10001"}, None),
        ("GET", f"{LIST}registrationsStolen", {"date": "2026-10-01"}, None),
        ("GET", DETAILS, {}, None),
        ("GET", DETAILS, {"plate": "1-ABC-234"}, None),
        ("GET", DETAILS, {"plate": "!!", "date": "2026-10-01"}, None),
        ("GET", DETAILS, {"plate": "1-ABC-234", "transactionId": "x", "date": "2026-10-01"}, None),
        ("POST", DETAILS, {}, b"not json"),
        ("POST", DETAILS, {}, json.dumps({"transactionIds": [1, 2]}).encode()),
        ("POST", DETAILS, {}, json.dumps({"transactionIds": ["a"] * (MAX_BATCH_IDS + 1)}).encode()),
        ("POST", f"{LIST}transactions", {"date": "2026-10-01"}, b"{}"),
    ],
)
def test_bad_parameters_are_400(
    standin: Running, method: str, path: str, params: dict[str, str], body: bytes | None
) -> None:
    with standin.client() as client:
        answer = client.request(method, path, params=params, content=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == "BAD_REQUEST"
    assert "ABC" not in answer.text  # an error never quotes the plate asked for


def test_logs_carry_no_plate(standin: Running, generated: GenerationResult) -> None:
    date, items = _day(generated)
    plates = {i["plate"] for i in items if i["plate"] != "!!"}
    with standin.client() as client:
        for plate in list(plates)[:20]:
            assert client.get(DETAILS, params={"plate": plate, "date": date}).status_code == 200
        client.get(DETAILS, params={"plate": "1-ABC-234"})
    log = standin.log.getvalue()
    assert "GET /movementIndications/rowDetails 200" in log
    assert not [p for p in plates if p in log or p.replace("-", "") in log]
    assert "ABC" not in log


# ---- faults ---------------------------------------------------------------------------------


def _arm(client: httpx.Client, *faults: dict[str, object]) -> list[dict[str, object]]:
    answer = client.post("/_standin/faults", json={"faults": list(faults)})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["faults"])


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_status_faults_for_the_next_requests(
    standin: Running, generated: GenerationResult, status: str
) -> None:
    date, _ = _day(generated)
    with standin.client() as client:
        assert _arm(client, {"kind": status, "count": 2}) == [{"kind": status, "count": 2}]
        codes = [
            client.get(f"{LIST}transactions", params={"date": date}).status_code for _ in range(3)
        ]
        assert codes == [int(status), int(status), 200]
        assert client.get("/_standin/faults").json()["faults"] == []


def test_delay_fault_outlasts_a_short_client_timeout(
    standin: Running, generated: GenerationResult
) -> None:
    date, _ = _day(generated)
    with standin.client() as client:
        _arm(client, {"kind": "delay", "seconds": 1.0})
    with standin.client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{LIST}transactions", params={"date": date})


@pytest.mark.parametrize("kind", ["drop", "truncate"])
def test_broken_connections(standin: Running, generated: GenerationResult, kind: str) -> None:
    date, _ = _day(generated)
    with standin.client() as client:
        _arm(client, {"kind": kind})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(f"{LIST}transactions", params={"date": date})
        assert client.get(f"{LIST}transactions", params={"date": date}).status_code == 200


def test_json_cut_short(standin: Running, generated: GenerationResult) -> None:
    date, _ = _day(generated)
    with standin.client() as client:
        _arm(client, {"kind": "cutjson"})
        answer = client.get(f"{LIST}transactions", params={"date": date})
        assert answer.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer.content)


def test_repeated_item_across_pages(standin: Running, generated: GenerationResult) -> None:
    date, items = _day(generated)
    with standin.client() as client:
        page0 = client.get(f"{LIST}transactions", params={"date": date, "pageSize": 10}).json()
        _arm(client, {"kind": "repeat"})
        page1 = client.get(
            f"{LIST}transactions", params={"date": date, "page": 1, "pageSize": 10}
        ).json()
        assert page1["items"][0] == page0["items"][-1]
        assert [i["transactionId"] for i in page1["items"][1:]] == [
            i["transactionId"] for i in items[10:20]
        ]


def test_unavailable_fault(standin: Running, generated: GenerationResult) -> None:
    date, _ = _day(generated)
    other, _ = _day(generated, 1)
    with standin.client() as client:
        _arm(client, {"kind": "unavailable", "count": None, "date": date})
        for _ in range(2):
            gone = client.get(f"{LIST}transactions", params={"date": date})
            assert gone.status_code == 404 and gone.json()["code"] == "DAY_NOT_AVAILABLE"
        assert client.get(f"{LIST}transactions", params={"date": other}).status_code == 200
        assert client.delete("/_standin/faults").json()["faults"] == []
        assert client.get(f"{LIST}transactions", params={"date": date}).status_code == 200


def test_control_endpoint_refuses_unknown_faults(standin: Running) -> None:
    with standin.client() as client:
        for body in (
            {"faults": [{"kind": "meltdown"}]},
            {"faults": [{"kind": "503", "count": 0}]},
            {"x": 1},
        ):
            answer = client.post("/_standin/faults", json=body)
            assert answer.status_code == 400, body
        assert client.get("/_standin/faults").json()["faults"] == []


def test_an_unreadable_day_file_is_a_500(
    generated: GenerationResult, certs: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "feed"
    shutil.copytree(generated.feed_dir, broken)
    date = generated.days[0].date
    feed.day_file(broken, date).write_text("{not json\n")
    with serving(broken, certs) as running, running.client() as client:
        answer = client.get(f"{LIST}transactions", params={"date": date.isoformat()})
    assert answer.status_code == 500 and answer.json()["code"] == "INTERNAL"
    assert "cannot be read" not in answer.text  # the path stays in the log
    assert "not one JSON object a line" in running.log.getvalue()
