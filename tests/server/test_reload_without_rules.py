"""A published build without usable rules is not served: the server logs why and keeps serving
the last good snapshot (a later good publication is picked up as usual)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from tests.server import conftest
from tests.server.conftest import ServerThread, build_store
from tests.server.helpers import stub


def test_a_build_without_rules_is_not_served(
    server: ServerThread,
    channel: grpc.Channel,
    store_root: Path,
    keyer: PlateKeyer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="lez.server")
    s = stub(channel)
    info = s.ServerInfo(pb.ServerInfoRequest())
    good = info.snapshot_id
    with monkeypatch.context() as patch:
        patch.setattr(conftest, "rule_texts", dict)  # a build published with no rule texts
        bad = build_store(store_root, keyer).name
    assert (store_root / "current").resolve().name == bad
    holder = server.app.holder
    assert holder is not None
    deadline = time.monotonic() + 10
    while holder.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.last_error is not None and "no rule revision" in holder.last_error
    assert any(f"cannot switch to build {bad}" in r.getMessage() for r in caplog.records)
    answer = s.Check(pb.CheckRequest(plate="1ABC234", zone=info.zones[0].name, date="2025-06-02"))
    assert answer.snapshot_id == good  # still the last good snapshot
    assert answer.decision.outcome == pb.OUTCOME_ALLOWED
    fixed = build_store(store_root, keyer).name  # the next good build is served again
    deadline = time.monotonic() + 10
    while s.ServerInfo(pb.ServerInfoRequest()).snapshot_id != fixed:
        assert time.monotonic() < deadline, "the good build after the bad one was not served"
        time.sleep(0.05)
