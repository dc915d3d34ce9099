"""The stand-in's HTTPS server: the generated days served as docs/div-feed.md describes them.

Built on the standard library's `http.server.ThreadingHTTPServer` with `ssl`, not on a web
framework: the stand-in must misbehave on purpose (drop a connection without an answer, send
fewer bytes than `Content-Length` promises), which needs the raw socket a framework hides, and
it adds no dependency to a development tool. Each connection is wrapped in TLS with the client
certificate required (`ssl.CERT_REQUIRED` against the development CA); the handshake runs in
the connection's own thread, so a client that stalls or has no certificate holds up nobody.

Routes (all on the one mutual-TLS port, bound to 127.0.0.1):
- `GET /movementIndications/{type}?date=&page=&pageSize=`: keys of a day, paged;
- `GET /movementIndications/rowDetails?transactionId=` or `?plate=&date=`, and
  `POST /movementIndications/rowDetails` with `{"transactionIds": [...]}`: details;
- `GET|POST|DELETE /_standin/faults`: the fault plan (stand-in only, `div_standin.faults`).

Logs name the method, the path without its query (a query may hold a plate) and the status.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import parse_qs, urlsplit

from div_standin import feed
from div_standin.faults import DETAILS, LISTING, STATUS_KINDS, Fault, FaultPlan, from_json
from lez.errors import StandinError

PREFIX: Final = "/movementIndications/"
ROW_DETAILS: Final = "rowDetails"
CONTROL: Final = "/_standin/faults"
DEFAULT_PAGE_SIZE: Final = 5_000
MAX_PAGE_SIZE: Final = 10_000
MAX_BATCH_IDS: Final = 1_000
MAX_BODY_BYTES: Final = 1 << 20
HANDSHAKE_SECONDS: Final = 10.0
IDLE_SECONDS: Final = 60.0
TYPES: Final = (*feed.TRANSACTION_TYPES, feed.ALL)
CERT_FILES: Final = ("ca.pem", "server.pem", "server.key")


class BadRequest(Exception):
    """A request the feed answers with 400 BAD_REQUEST (message quotes no plate)."""


# ---- the feed, one day at a time -------------------------------------------------------------


@dataclass(slots=True)
class Day:
    """One generated day, indexed for the three ways it is read."""

    keys: dict[str, list[dict[str, Any]]]  # type (and ALL) -> key items in sequence order
    by_id: dict[str, dict[str, Any]]
    by_plate: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, items: list[feed.Item]) -> Day:
        keys: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
        by_plate: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            key = {k: item[k] for k in ("transactionId", "transactionType", "plate", "vehicleId")}
            keys[feed.ALL].append(key)
            keys[item["transactionType"]].append(key)
            normalised = feed.normalised_plate(item["plate"])
            if normalised is not None:
                by_plate.setdefault(normalised, []).append(item)
        return cls(keys, {item["transactionId"]: item for item in items}, by_plate)


class Feed:
    """The days of a feed directory, each read on first use and kept."""

    def __init__(self, feed_dir: Path) -> None:
        self.feed_dir = feed_dir
        manifest = feed.read_manifest(feed_dir)
        self.dates = {d.isoformat(): d for d in feed.manifest_days(manifest)}
        self._days: dict[str, Day] = {}
        self._lock = threading.Lock()

    def day(self, date: str) -> Day | None:
        """The day, or None when it was not generated."""
        if date not in self.dates:
            return None
        with self._lock:
            if date not in self._days:
                self._days[date] = Day.of(feed.read_day(self.feed_dir, self.dates[date]))
            return self._days[date]


# ---- the server ------------------------------------------------------------------------------


def tls_context(certs_dir: Path) -> ssl.SSLContext:
    """Server TLS that requires a client certificate issued by `certs_dir/ca.pem`."""
    missing = [name for name in CERT_FILES if not (certs_dir / name).is_file()]
    if missing:
        raise StandinError(
            f"{certs_dir}: missing {', '.join(missing)}; "
            f"write them with lez-div certs --out {certs_dir}"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs_dir / "server.pem", certs_dir / "server.key")
    context.load_verify_locations(certs_dir / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class StandinServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections are mutual-TLS sockets."""

    daemon_threads = True

    def __init__(
        self, port: int, feed_data: Feed, faults: FaultPlan, tls: ssl.SSLContext, log: TextIO
    ) -> None:
        self.feed = feed_data
        self.faults = faults
        self.tls = tls
        self.log = log
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body go apart
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        self.log.write(f"lez-div: connection ended: {kind.__name__ if kind else 'error'}\n")
        self.log.flush()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@dataclass(slots=True)
class _Answer:
    status: int
    body: dict[str, Any]


def _error(status: int, code: str, message: str) -> _Answer:
    return _Answer(status, {"code": code, "message": message})


def _not_available(date: str) -> _Answer:
    return _error(404, "DAY_NOT_AVAILABLE", f"the transactions of {date} are not available")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandinServer
    timeout = IDLE_SECONDS

    def setup(self) -> None:
        self.request.settimeout(HANDSHAKE_SECONDS)
        self.request.do_handshake()
        super().setup()

    # ---- logging: never the query ------------------------------------------------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        self._log(f"{getattr(self, 'command', '-')} {path} {code}")

    def log_error(self, format: str, *args: Any) -> None:
        self._log("request refused before routing")

    def _log(self, line: str) -> None:
        self.server.log.write(f"lez-div: {line}\n")
        self.server.log.flush()

    # ---- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            body = self._read_body()
            if url.path == CONTROL:
                self._send(self._control(method, body))
                return
            if not url.path.startswith(PREFIX) or "/" in url.path[len(PREFIX) :]:
                self._send(_error(404, "NOT_FOUND", "no such service; see docs/div-feed.md"))
                return
            service = url.path[len(PREFIX) :]
            if service == ROW_DETAILS:
                self._details(method, query, body)
            elif method == "GET":
                self._listing(service, query)
            else:
                raise BadRequest(f"{method} is not served on a key listing; use GET")
        except BadRequest as exc:
            self._send(_error(400, "BAD_REQUEST", str(exc)))
        except StandinError as exc:  # a day file that cannot be read: the stand-in's own fault
            self._log(f"error: {exc}")
            self._send(_error(500, "INTERNAL", "the stand-in cannot read its feed"))

    def _read_body(self) -> bytes:
        length_text = self.headers.get("Content-Length", "0")
        if not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest(f"Content-Length must be a number up to {MAX_BODY_BYTES}")
        return self.rfile.read(int(length_text)) if int(length_text) else b""

    # ---- key listings --------------------------------------------------------------------------

    def _listing(self, kind: str, query: dict[str, list[str]]) -> None:
        if kind not in TYPES:
            raise BadRequest(f"unknown transaction type; use one of {', '.join(TYPES)}")
        date = _date(query)
        page = _int(query, "page", 0, 0, None)
        size = _int(query, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        fault = self.server.faults.take(LISTING, page, date)
        day = self.server.feed.day(date)
        if day is None or (fault is not None and fault.kind == "unavailable"):
            self._send(_not_available(date), fault)
            return
        keys = day.keys[kind]
        items = keys[page * size : (page + 1) * size]
        if fault is not None and fault.kind == "repeat" and 0 < page * size <= len(keys):
            items = [keys[page * size - 1], *items]
        body = {
            "date": date,
            "type": kind,
            "page": page,
            "pageSize": size,
            "totalPages": -(-len(keys) // size),
            "totalItems": len(keys),
            "items": items,
        }
        self._send(_Answer(200, body), fault)

    # ---- details -------------------------------------------------------------------------------

    def _details(self, method: str, query: dict[str, list[str]], body: bytes) -> None:
        if method == "POST":
            ids = _batch_ids(body)
            fault = self.server.faults.take(DETAILS)
            self._send(_Answer(200, {"items": self._by_ids(ids)}), fault)
        elif method != "GET":
            raise BadRequest(f"{method} is not served on rowDetails; use GET or POST")
        elif "transactionId" in query and "plate" not in query:
            ids = [_one(query, "transactionId")]
            fault = self.server.faults.take(DETAILS)
            self._send(_Answer(200, {"items": self._by_ids(ids)}), fault)
        elif "plate" in query and "transactionId" not in query:
            normalised = feed.normalised_plate(_one(query, "plate"))
            if normalised is None:
                raise BadRequest("the plate does not normalise (lez.plates refuses it)")
            date = _date(query)
            fault = self.server.faults.take(DETAILS, None, date)
            day = self.server.feed.day(date)
            if day is None or (fault is not None and fault.kind == "unavailable"):
                self._send(_not_available(date), fault)
                return
            self._send(_Answer(200, {"items": day.by_plate.get(normalised, [])}), fault)
        else:
            raise BadRequest("give either transactionId, or plate and date")

    def _by_ids(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        found = []
        for tid in ids:
            date = _date_of_id(tid)
            day = self.server.feed.day(date) if date else None
            if day is not None and tid in day.by_id:
                found.append(day.by_id[tid])
        return found

    # ---- control ---------------------------------------------------------------------------

    def _control(self, method: str, body: bytes) -> _Answer:
        plan = self.server.faults
        if method == "DELETE":
            plan.clear()
        elif method == "POST":
            try:
                request = json.loads(body or b"null")
                items = request.get("faults") if isinstance(request, dict) else None
                if not isinstance(items, list):
                    raise BadRequest(
                        'expected {"faults": [{"kind": ..., "count": ...}], "replace": false}'
                    )
                plan.arm([from_json(f) for f in items], replace=bool(request.get("replace")))
            except (ValueError, StandinError) as exc:
                raise BadRequest(str(exc)) from None
        return _Answer(200, {"faults": plan.armed()})

    # ---- answering, with the fault if one was taken ----------------------------------------

    def _send(self, answer: _Answer, fault: Fault | None = None) -> None:
        if fault is not None:
            self._log(f"fault {fault.kind} on {urlsplit(self.path).path}")
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            elif fault.kind in STATUS_KINDS:
                answer = _error(int(fault.kind), "STANDIN_FAULT", "injected by the stand-in")
            elif fault.kind == "drop":
                self._hang_up()
                return
        data = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
        promised = len(data)
        if fault is not None and fault.kind == "cutjson":
            data = data[: len(data) // 2]
            promised = len(data)
        elif fault is not None and fault.kind == "truncate":
            data = data[: len(data) // 2]
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(promised))
        self.end_headers()
        self.wfile.write(data)
        if promised != len(data):
            self.wfile.flush()
            self._hang_up()

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)


# ---- parameters ------------------------------------------------------------------------------


def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values or not values[0]:
        raise BadRequest(f"parameter {name} is required")
    if len(values) > 1:
        raise BadRequest(f"parameter {name} is given more than once")
    return values[0]


def _date(query: dict[str, list[str]]) -> str:
    text = _one(query, "date")
    try:
        return dt.date.fromisoformat(text).isoformat() if len(text) == 10 else _bad_date()
    except ValueError:
        return _bad_date()


def _bad_date() -> str:
    raise BadRequest("parameter date must be a day as YYYY-MM-DD")


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int | None) -> int:
    if name not in query:
        return default
    text = _one(query, name)
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"parameter {name} must be an integer {bound}")
    return int(text)


def _batch_ids(body: bytes) -> list[str]:
    try:
        request = json.loads(body)
    except ValueError:
        raise BadRequest('the body must be JSON: {"transactionIds": [...]}') from None
    ids = request.get("transactionIds") if isinstance(request, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest('the body must be {"transactionIds": [strings]}')
    if len(ids) > MAX_BATCH_IDS:
        raise BadRequest(f"at most {MAX_BATCH_IDS} transactionIds per request (got {len(ids)})")
    return ids


def _date_of_id(transaction_id: str) -> str | None:
    head = transaction_id.partition("-")[0]
    if len(head) != 8 or not head.isdigit():
        return None
    try:
        return dt.date(int(head[:4]), int(head[4:6]), int(head[6:])).isoformat()
    except ValueError:
        return None


# ---- running it ------------------------------------------------------------------------------


def serve(
    feed_dir: Path,
    certs_dir: Path,
    *,
    port: int = 0,
    port_file: Path | None = None,
    faults: Sequence[Fault] = (),
    out: TextIO = sys.stdout,
    log: TextIO = sys.stderr,
) -> None:
    """Serve until SIGTERM or SIGINT. Port 0 picks a free one; it is printed and written to
    `port_file` (atomically) once the server accepts connections."""
    server = StandinServer(
        port, Feed(feed_dir), FaultPlan(list(faults)), tls_context(certs_dir), log
    )

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if port_file is not None:
        feed.write_atomically(port_file, f"{server.port}\n".encode())
    days = sorted(server.feed.dates)
    span = f"{days[0]} to {days[-1]}" if days else "no day"
    out.write(f"lez-div: serving https://127.0.0.1:{server.port} ({len(days)} days, {span})\n")
    out.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
