"""Appeals after the daily sync: a running server picks up the synced layer by itself, earlier
decisions are unchanged by later mutations, and where a correction says the earlier data was
wrong, `Recheck` reports the changed outcome and what changed (docs/sync.md)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx

from lez.api.v1 import access_pb2 as pb
from loader.feed import FeedSettings, no_wait
from loader.sync import SyncSettings, run_sync
from server.config import ServerConfig
from tests.loader.test_sync import CORRECTED, NEW5, ScriptedFeed, build_before, details
from tests.loader.test_sync import item as feed_item
from tests.server.conftest import make_server
from tests.server.helpers import stub

ZONE = "Antwerpen"
CORRECTED_PLATE = "1-AAA-003"  # an old diesel whose euro norm the DIV corrects from 2026-01-01
TRANSFERRED_PLATE = "1-AAA-001"  # an old diesel moved onto a new petrol car on 2026-10-21
FEED = {
    "2026-10-21": [
        feed_item("T1", "2026-10-21", 1, "registrationsTransferred", TRANSFERRED_PLATE,
                  details=details(NEW5)),
        feed_item("T2", "2026-10-21", 2, "registrationsChangedDataVehicle", CORRECTED_PLATE,
                  correctsFrom="2026-01-01", details=details(CORRECTED)),
    ],
}  # fmt: skip


def _check(channel: grpc.Channel, plate: str, day: str) -> pb.CheckResponse:
    return stub(channel).Check(pb.CheckRequest(plate=plate, zone=ZONE, date=day))


def _earlier(answer: pb.CheckResponse, plate: str, day: str) -> pb.EarlierDecision:
    d = answer.decision
    return pb.EarlierDecision(
        plate=plate,
        zone=ZONE,
        date=day,
        outcome=d.outcome,
        reason=d.reason,
        euro=d.euro,
        snapshot_id=answer.snapshot_id,
    )


def test_recheck_reports_a_correction_and_keeps_earlier_days(
    tmp_path: Path, key_file: Path, base_config: ServerConfig
) -> None:
    root = build_before(tmp_path, key_file)
    server = make_server(base_config, store_root=root)
    try:
        with grpc.insecure_channel(server.target) as channel:
            june, october = "2026-06-01", "2026-10-20"
            before = {
                (p, d): _check(channel, p, d)
                for p in (CORRECTED_PLATE, TRANSFERRED_PLATE)
                for d in (june, october)
            }
            assert before[CORRECTED_PLATE, june].decision.outcome == pb.OUTCOME_NOT_ALLOWED
            first = stub(channel).ServerInfo(pb.ServerInfoRequest()).snapshot_id

            run_sync(
                SyncSettings(store_root=root, key_file=key_file,
                             feed=FeedSettings(base_url="https://div.test", attempts=2)),
                transport=httpx.MockTransport(ScriptedFeed(FEED)), wait=no_wait,
                log=lambda line: None,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while stub(channel).ServerInfo(pb.ServerInfoRequest()).snapshot_id == first:
                assert time.monotonic() < deadline, "the server did not pick up the synced day"
                time.sleep(0.05)

            # the transfer changes nothing before its day, and the day itself
            for day in (june, october):
                now = _check(channel, TRANSFERRED_PLATE, day)
                assert now.decision.outcome == before[TRANSFERRED_PLATE, day].decision.outcome
            after_transfer = _check(channel, TRANSFERRED_PLATE, "2026-10-21")
            assert after_transfer.decision.outcome == pb.OUTCOME_ALLOWED

            # the correction reaches back to 2026-01-01: Recheck says so, and why
            got = stub(channel).Recheck(
                pb.RecheckRequest(
                    decisions=[
                        _earlier(before[CORRECTED_PLATE, june], CORRECTED_PLATE, june),
                        _earlier(before[TRANSFERRED_PLATE, june], TRANSFERRED_PLATE, june),
                    ]
                )
            )
            corrected, transferred = got.results
            assert corrected.outcome_changed
            assert corrected.current.outcome == pb.OUTCOME_ALLOWED
            # the register's vehicle data changed (a city's euro correction would say
            # EURO_CORRECTED instead)
            assert list(corrected.changes) == [pb.CHANGE_VEHICLE_DATA]
            assert not transferred.outcome_changed and not transferred.changes
            # a day before the corrected interval keeps its answer
            december = _check(channel, CORRECTED_PLATE, "2025-12-01")
            assert december.decision.euro == "4"
    finally:
        server.stop()
