"""Warning campaigns from the client side: `LezClient.losing_access` and its asyncio twin over
the campaign register (tests/support/campaign_register.py), `lez campaign` (CSV of keys,
summary, progress, chart) and `lez batch --as-of`; the core's retry and as_of checks."""

from __future__ import annotations

import asyncio
import builtins
import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from clients import AsyncLezClient, LezClient, ProtocolError, errors
from clients.campaign_output import losses_by_step
from clients.cli import main
from clients.core.campaign import CampaignRun
from clients.core.chunks import ChunkSource
from clients.core.streams import BatchTally, StreamCall
from clients.settings import ClientSettings
from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from lez.progress import ItemProgress
from server.auth import Identity, Role
from server.config import ServerConfig
from tests.server.conftest import ServerThread
from tests.support import campaign_register as cr

NIS = ",".join(str(n) for n in cr.BRUSSELS_NIS)


@pytest.fixture(scope="module")
def campaign_server(
    tmp_path_factory: pytest.TempPathFactory, client_key_file: Path, client_keyer: PlateKeyer
) -> Iterator[ServerThread]:
    where = tmp_path_factory.mktemp("campaign")
    cr.build_campaign_store(where / "store", client_keyer)
    config = ServerConfig(
        address="127.0.0.1:0",
        store_root=where / "store",
        key_file=client_key_file,
        audit_dir=where / "audit",
        warm_store=False,
        grace_period_s=1.0,
        min_cell_size=2,
    ).validate()
    roles = frozenset({Role.INTEGRATOR})
    s = ServerThread(config, clients={"dev": Identity(identity="dev", organisation="Brussel",
                                                      roles=roles)})  # fmt: skip
    yield s
    s.stop()


def plates_of(keyer: PlateKeyer, keys: np.ndarray) -> dict[str, int]:
    """Plate of each golden case listed -> its row."""
    names = {cr.key_of(keyer, c.plate): c.plate for c in cr.CASES}
    return {names[bytes(k.tobytes())]: i for i, k in enumerate(keys)}


def test_client_lists_the_golden_cases(
    campaign_server: ServerThread, client_keyer: PlateKeyer
) -> None:
    seen: list[int] = []
    with LezClient([campaign_server.target], timeout_s=10.0) as client:
        result = client.losing_access(
            cr.ZONE, cr.LATER, cr.BRUSSELS_NIS, reference_date=cr.REFERENCE, chunk_size=2,
            progress=seen.append,
        )  # fmt: skip
    rows = plates_of(client_keyer, result.rows.keys)
    assert set(rows) == set(cr.LISTED_LATER)
    days = result.rows.first_days_lost()
    assert {p: days[i] for p, i in rows.items()} == cr.LISTED_LATER
    assert set(result.rows.reason_names()) == {"EURO_BELOW_MINIMUM"}
    assert sum(seen) == len(result) == result.summary.vehicles == 5 and max(seen) <= 2
    assert result.summary.key_id == client_keyer.key_id and result.summary.audit_id


def test_async_client_gives_the_same(
    campaign_server: ServerThread, client_keyer: PlateKeyer
) -> None:
    async def go() -> Any:
        async with AsyncLezClient([campaign_server.target], timeout_s=10.0) as client:
            return await client.losing_access(
                cr.ZONE, cr.STEP, cr.BRUSSELS_NIS, reference_date=cr.REFERENCE
            )

    result = asyncio.run(go())
    assert set(plates_of(client_keyer, result.rows.keys)) == set(cr.LISTED_ON_STEP)


def test_client_errors_are_client_exceptions(campaign_server: ServerThread) -> None:
    with LezClient([campaign_server.target], timeout_s=10.0) as client:
        with pytest.raises(errors.InvalidRequest):
            client.losing_access(cr.ZONE, cr.REFERENCE, [], reference_date=cr.REFERENCE)
        with pytest.raises(errors.UnknownZone):
            client.losing_access("Atlantis", cr.STEP, [21004])
        with pytest.raises(errors.PermissionDenied):  # the integrator may not enforce
            client.check_batch([("1LOS001", "BE", cr.REFERENCE)], zone=cr.ZONE)


# ---- lez campaign ----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def campaign(
    capsys: pytest.CaptureFixture[str], server: ServerThread, *extra: str
) -> tuple[int, str, str]:
    return run(
        capsys, "--server", server.target, "campaign", "--zone", cr.ZONE,
        "--reference-date", cr.REFERENCE.isoformat(), "--nis", NIS, *extra,
    )  # fmt: skip


def test_campaign_writes_keys_and_prints_the_summary(
    capsys: pytest.CaptureFixture[str],
    campaign_server: ServerThread,
    client_keyer: PlateKeyer,
    tmp_path: Path,
) -> None:
    out_csv = tmp_path / "letters.csv"
    code, out, err = campaign(capsys, campaign_server, "--date", cr.LATER.isoformat(),
                              str(out_csv))  # fmt: skip
    assert code == 0, err
    with open(out_csv, newline="") as fh:
        got = list(csv.DictReader(fh))
    names = {cr.key_of(client_keyer, c.plate).hex(): c.plate for c in cr.CASES}
    listed = {names[row["key"]]: dt.date.fromisoformat(row["first_day_lost"]) for row in got}
    assert listed == cr.LISTED_LATER
    assert {(r["reason"], r["category"], r["fuel"]) for r in got} == {
        ("EURO_BELOW_MINIMUM", "M1", "02")
    }
    assert {r["euro"] for r in got} == {"6", "4"}
    assert "5 vehicle(s) will lose access to Brussels by 2028-06-01" in out
    cells = [line.split() for line in out.splitlines() if line.startswith("  M1")]
    assert cells == [["M1", "02", "6", "4"]]  # the one cell of at least 2
    assert "1 vehicle(s) in 1 cell(s) of fewer than 2 not shown" in out
    assert f"wrote {out_csv}" in out
    for case in cr.CASES:
        assert case.plate not in out + err + out_csv.read_text()


def test_campaign_plot_and_json(
    capsys: pytest.CaptureFixture[str], campaign_server: ServerThread, tmp_path: Path
) -> None:
    png = tmp_path / "steps.png"
    code, out, err = campaign(
        capsys, campaign_server, "--date", cr.LATER.isoformat(), str(tmp_path / "o.csv"),
        "--plot", str(png), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"vehicles": 5' in out and f'"plot": "{png}"' in out


def test_losses_by_step_counts_each_day_by_fuel(
    campaign_server: ServerThread, client_keyer: PlateKeyer
) -> None:
    with LezClient([campaign_server.target], timeout_s=10.0) as client:
        rows = client.losing_access(
            cr.ZONE, cr.LATER, cr.BRUSSELS_NIS, reference_date=cr.REFERENCE
        ).rows
    days, by_fuel = losses_by_step(rows, {2: ("02", "Diesel")})
    assert days == [dt.date(2027, 9, 1), cr.STEP, dt.date(2028, 3, 1)]
    assert by_fuel == {"Diesel (02)": [1, 3, 1]}


def test_campaign_without_matplotlib_is_one_readable_line(
    capsys: pytest.CaptureFixture[str],
    campaign_server: ServerThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, _, err = campaign(
        capsys, campaign_server, "--date", cr.STEP.isoformat(), str(tmp_path / "o.csv"),
        "--plot", str(tmp_path / "p.png"),
    )  # fmt: skip
    assert code == 2
    assert "--plot needs matplotlib" in err and "lez-access[plot]" in err
    assert "Traceback" not in err


def test_campaign_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "campaign", "--zone", "Brussels", "--date", "2028-01-01",
                       "--nis", "21004,Ixelles", str(tmp_path / "o.csv"))  # fmt: skip
    assert code == 2 and "NIS codes separated by commas" in err


def test_progress_count_shows_a_running_count() -> None:
    screen = io.StringIO()
    count = ItemProgress("vehicles", screen, enabled=True, verb="received")
    count(3)
    count(2)
    count.finish()
    assert "5 vehicles received" in screen.getvalue() and "vehicles/s" in screen.getvalue()
    silent = io.StringIO()
    quiet = ItemProgress("vehicles", silent, enabled=False, verb="received")
    quiet(3)
    quiet.finish()
    assert silent.getvalue() == ""


# ---- lez batch --as-of -----------------------------------------------------------------------


def test_batch_as_of(
    capsys: pytest.CaptureFixture[str], campaign_server: ServerThread, tmp_path: Path
) -> None:
    src = tmp_path / "reads.csv"
    day = cr.REFERENCE.isoformat()
    src.write_text(f"plate,country,day\n1LOS001,BE,{day}\n1PET001,BE,{day}\n")
    target = tmp_path / "o.csv"
    code, out, err = run(
        capsys, "--server", campaign_server.target, "batch", str(src), str(target),
        "--zone", cr.ZONE, "--as-of", cr.STEP.isoformat(),
    )  # fmt: skip
    assert code == 0, err
    with open(target, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["outcome"] for r in got] == ["NOT_ALLOWED", "ALLOWED"]
    assert [r["day"] for r in got] == [day, day]  # the read's day stays the read's day
    assert "on 2028-01-01 (as_of)" in out


# ---- the core --------------------------------------------------------------------------------


class _Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "down"

    def trailing_metadata(self) -> tuple[()]:
        return ()


def test_campaign_is_retried_only_before_any_key_came() -> None:
    settings = ClientSettings.resolve(["127.0.0.1:1"], backoff_initial_s=0.01)
    run = CampaignRun(settings, 5.0, None)
    assert run.wait_after(_Failure(grpc.StatusCode.UNAVAILABLE)) >= 0
    run.receive(pb.LosingAccessChunk(keys=bytes(16), reason=b"\x0d",
                                     first_day_lost=bytes(4), category=b"\x01", fuel=b"\x02",
                                     euro=b"\x03", count=1))  # fmt: skip
    with pytest.raises(errors.ServerUnavailable):
        run.wait_after(_Failure(grpc.StatusCode.UNAVAILABLE))
    with pytest.raises(ProtocolError):
        run.result()  # no summary
    run.receive(pb.LosingAccessChunk(summary=pb.LosingAccessSummary(vehicles=2)))
    with pytest.raises(ProtocolError):
        run.result()  # the summary counts 2, 1 came
    with pytest.raises(ProtocolError):
        CampaignRun(settings, 5.0, None).receive(pb.LosingAccessChunk(keys=bytes(15), count=1))


def test_an_answer_not_on_the_date_asked_is_refused() -> None:
    rows = [("1LOS001", "BE", cr.REFERENCE)]
    source = ChunkSource(rows, zone=cr.ZONE, ruleset="", chunk_size=10, as_of="2028-01-01")
    first = source.next()
    assert first is not None and first.message.as_of == "2028-01-01"
    call = StreamCall(first, source, BatchTally())
    answer = pb.DecisionChunk(chunk_id=first.chunk_id, count=1, outcome=b"\x01",
                              allowed_until=bytes(4), euro=b"\x00")  # fmt: skip
    with pytest.raises(ProtocolError, match="as_of"):
        call.receive(answer)  # an older server that evaluated the read's own day
