"""The data quality of the served store: sent in ServerInfo to operators only, shown by `lez
info`, absent when the store has none."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from clients.cli import main as lez
from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from server.auth import Identity, Role
from server.config import ServerConfig
from tests.server.conftest import ServerThread, build_store, make_server
from tests.server.helpers import stub

QUALITY = {
    "records": 2000,
    "missing_category": 20,
    "missing_euro": 500,
    "missing_fuel": 4,
    "derived": {"euro": 480, "category": 15},
    "unknown_codes": {"fuel": 3, "category": 1},
    "rejected": 7,
    "source": "sync 2026-10-23",
}


def _info(config: ServerConfig, roles: frozenset[Role]) -> pb.ServerInfoResponse:
    who = Identity(identity="dev", organisation="someone", roles=roles)
    srv = make_server(config, clients={"dev": who})
    try:
        with grpc.insecure_channel(srv.target) as ch:
            info: pb.ServerInfoResponse = stub(ch).ServerInfo(pb.ServerInfoRequest())
            return info
    finally:
        srv.stop()


def test_operators_receive_the_data_quality(base_config: ServerConfig, keyer: PlateKeyer) -> None:
    build_store(base_config.store_root, keyer, data_quality=QUALITY)
    info = _info(base_config, frozenset({Role.OPERATOR}))
    assert info.HasField("data_quality")
    got = MessageToDict(info.data_quality, preserving_proto_field_name=True)
    expected = {k: (str(v) if isinstance(v, int) else v) for k, v in QUALITY.items()}
    for name in ("derived", "unknown_codes"):  # maps of uint64: JSON strings too
        counts = QUALITY[name]
        assert isinstance(counts, dict)
        expected[name] = {k: str(v) for k, v in counts.items()}
    assert got == expected


@pytest.mark.parametrize(
    "role", [r for r in Role if r != Role.OPERATOR], ids=lambda r: r.name.lower()
)
def test_other_roles_do_not(base_config: ServerConfig, keyer: PlateKeyer, role: Role) -> None:
    build_store(base_config.store_root, keyer, data_quality=QUALITY)
    info = _info(base_config, frozenset({role}))
    assert info.snapshot_id  # answered...
    assert not info.HasField("data_quality")  # ...without the data quality


def test_a_store_without_data_quality_sends_none(server: object, channel: grpc.Channel) -> None:
    info = stub(channel).ServerInfo(pb.ServerInfoRequest())  # the dev operator
    assert not info.HasField("data_quality")


def test_lez_info_shows_it_to_an_operator(
    base_config: ServerConfig, keyer: PlateKeyer, capsys: pytest.CaptureFixture[str]
) -> None:
    build_store(base_config.store_root, keyer, data_quality=QUALITY)
    srv = make_server(base_config)
    try:
        assert lez(["--server", srv.target, "info"]) == 0
    finally:
        srv.stop()
    out = capsys.readouterr().out
    assert "data quality  2,000 records (sync 2026-10-23); missing category 20 (1.0%), euro " in out
    assert "500 (25.0%), fuel 4 (0.2%)" in out
    assert "derived: category 15, euro 480; unknown codes: category 1, fuel 3; rejected 7" in out


def test_lez_info_without_it(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert lez(["--server", server.target, "info"]) == 0
    assert "data quality" not in capsys.readouterr().out
