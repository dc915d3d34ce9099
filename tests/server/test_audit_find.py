"""`lez-server audit find`: who consulted a plate, from the audit of a real server (unary checks
inline, a stream's keys in its sidecar), never printing the plate back."""

from __future__ import annotations

import datetime as dt
import json
import mmap
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.keys import load_key
from server.__main__ import main
from server.audit import read_records
from server.audit_find import count_key, find_consultations, plate_key, records_end
from server.config import ServerConfig
from tests.server.conftest import DAY, ServerThread
from tests.server.helpers import chunk, stub
from tests.server.test_audit import served_problems

SOUGHT = "1ABC234"
OTHER = "1XYZ987"
NEVER = "1ELE001"  # in the store, never consulted


def _consult(channel: grpc.Channel) -> str:
    """Two checks of the sought plate, one of another, one stream holding both (in a sidecar:
    more pairs than the test server lists inline); returns the zone."""
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    for plate in (SOUGHT, OTHER, "1-abc-234"):
        s.Check(pb.CheckRequest(plate=plate, zone=zone, date="2025-06-02"))
    plates = [OTHER] * 10 + [SOUGHT] * 3
    list(s.CheckStream(iter([chunk(plates, [DAY] * len(plates), zone=zone)])))
    return zone


def _find(server: ServerThread, plate: str, *extra: str) -> list[str]:
    config = server.app.config
    args = ["audit", "find", "--plate", plate, "--key-file", str(config.key_file)]
    return [*args, "--audit-dir", str(config.audit_dir), *extra]


def test_find_lists_checks_and_streams_of_one_plate(
    server: ServerThread, channel: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = _consult(channel)
    records = [r for _, r in read_records(server.app.config.audit_dir / "audit-w0.jsonl")]
    assert "keys_file" in records[-2]  # the stream's chunk: its keys are in a sidecar
    assert records[-1]["part"] == "end"  # the stream's closing record holds no keys
    assert main(_find(server, "1-ABC-234", "--json")) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(f["rpc"], f["times"], f["outcome"], f["ended"]) for f in found] == [
        ("Check", 1, "ALLOWED", ""),
        ("Check", 1, "ALLOWED", ""),
        ("CheckStream", 3, "ALLOWED", "OK"),  # its own outcome, not the call's 10 NOT_ALLOWED
    ]
    expected = [r for r in records if r.get("part") == "chunk" or r["seq"] in (1, 3)]
    assert [f["audit_id"] for f in found] == [r["hash"] for r in expected]
    assert [f["ts"] for f in found] == [r["ts"] for r in expected]
    for f, r in zip(found, expected, strict=True):
        assert (f["organisation"], f["identity"], f["zone"]) == (
            r["organisation"],
            r["identity"],
            zone,
        )
        assert f["roles"] == ",".join(r["roles"]) and f["where"] == f"audit-w0.jsonl#{r['seq']}"
        assert f["request_id"] == r["request_id"] and len(f["request_id"]) == 32
    assert main(_find(server, SOUGHT)) == 0  # the table
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:6] == ["ts", "organisation", "identity", "roles",
                                                 "purpose", "rpc"]  # fmt: skip
    assert "3 consultation(s) of this plate" in table
    for text in (table, json.dumps(found)):
        assert SOUGHT not in text and SOUGHT.lower() not in text and "1-ABC-234" not in text


def test_find_nothing_for_a_plate_not_consulted_and_outside_the_filters(
    server: ServerThread, channel: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = _consult(channel)
    assert main(_find(server, NEVER)) == 0
    out = capsys.readouterr().out
    assert "0 consultation(s)" in out and NEVER not in out
    today = dt.datetime.now(dt.UTC).date()
    for extra in (
        ["--zone", "Atlantis"],
        ["--from", (today + dt.timedelta(days=1)).isoformat()],
        ["--to", (today - dt.timedelta(days=1)).isoformat()],
    ):
        assert main(_find(server, SOUGHT, *extra)) == 0
        assert "0 consultation(s)" in capsys.readouterr().out
    both = ["--zone", zone.upper(), "--from", today.isoformat(), "--to", today.isoformat()]
    assert main(_find(server, SOUGHT, *both)) == 0
    assert "3 consultation(s)" in capsys.readouterr().out


def test_find_refuses_bad_input_without_echoing_it(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_find(server, "1ABC23!!")) == 2
    err = capsys.readouterr().err
    assert "plate rejected" in err and "1ABC23" not in err
    assert main(_find(server, SOUGHT, "--from", "yesterday")) == 2
    assert "--from wants a day as YYYY-MM-DD" in capsys.readouterr().err


def test_sidecar_scan_counts_whole_keys_only(tmp_path: Path, key_file: Path) -> None:
    key = plate_key(load_key(key_file), SOUGHT)
    other = plate_key(load_key(key_file), OTHER)
    sidecar = tmp_path / "k.bin"
    sidecar.write_bytes(other * 5 + key + other + key + key[:8])  # a cut last key
    assert count_key(sidecar, key) == 2
    sidecar.write_bytes(b"\0" * 8 + key + b"\0" * 8)  # the key across two slots: not a key
    assert count_key(sidecar, key) == 0
    assert find_consultations(tmp_path, key) == []


@pytest.mark.parametrize("records", [0, 1, 4095, 4096, 4097, 50_000])
@pytest.mark.parametrize("padding", [0, 1, 4096, 300_000])
def test_records_end_skips_the_padding(tmp_path: Path, records: int, padding: int) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"x" * records + bytes(padding) + (b"" if records + padding else b"\0"))
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        assert records_end(data) == records


def _recheck(channel: grpc.Channel, zone: str, plate: str) -> None:
    item = pb.EarlierDecision(plate=plate, zone=zone, date="2025-06-02")
    stub(channel).Recheck(pb.RecheckRequest(decisions=[item, item]))


def test_find_lists_recheck_and_every_file_of_a_rotated_series(
    base_config: ServerConfig, key_file: Path
) -> None:
    """Check, CheckStream and Recheck found across a rotated file and the file a restarted
    server continued the chain in."""
    first = ServerThread(base_config)
    try:
        with grpc.insecure_channel(first.target) as ch:
            zone = _consult(ch)
            _recheck(ch, zone, SOUGHT)
    finally:
        first.stop()
    audit_dir = base_config.audit_dir
    active = audit_dir / "audit-w0.jsonl"
    first_seq = next(read_records(active))[1]["seq"]
    active.rename(audit_dir / f"audit-w0.{first_seq:012d}.jsonl")  # as a rotation leaves it
    second = ServerThread(base_config)  # continues the chain from the rotated file
    try:
        with grpc.insecure_channel(second.target) as ch:
            zone = stub(ch).ServerInfo(pb.ServerInfoRequest()).zones[0].name
            _recheck(ch, zone, SOUGHT)
            stub(ch).Check(pb.CheckRequest(plate=SOUGHT, zone=zone, date="2025-06-02"))
        assert served_problems(second, active) == []
    finally:
        second.stop()
    found = find_consultations(audit_dir, plate_key(load_key(key_file), SOUGHT))
    assert [(c.rpc, c.times, c.outcome, c.where.split("#")[0]) for c in found] == [
        ("Check", 1, "ALLOWED", "audit-w0.000000000001.jsonl"),
        ("Check", 1, "ALLOWED", "audit-w0.000000000001.jsonl"),
        ("CheckStream", 3, "ALLOWED", "audit-w0.000000000001.jsonl"),
        ("Recheck", 2, "ALLOWED", "audit-w0.000000000001.jsonl"),
        ("Recheck", 2, "ALLOWED", "audit-w0.jsonl"),
        ("Check", 1, "ALLOWED", "audit-w0.jsonl"),
    ]
