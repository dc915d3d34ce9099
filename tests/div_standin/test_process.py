"""The stand-in as a real process (`running_standin`), as the feed client's tests use it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from div_standin.generator import GenerationResult
from div_standin.process import running_standin
from lez.errors import StandinError


@pytest.mark.slow
def test_running_standin_serves_faults_and_stops(
    generated: GenerationResult, certs: Path, tmp_path: Path
) -> None:
    date = generated.days[0].date.isoformat()
    log = tmp_path / "standin.log"
    with running_standin(generated.feed_dir, certs, faults=("503:1",), log=log) as handle:
        with httpx.Client(base_url=handle.url, verify=handle.ssl_context(), timeout=10) as client:
            path = "/movementIndications/transactions"
            assert client.get(path, params={"date": date}).status_code == 503  # from --fault
            assert client.get(path, params={"date": date}).json()["totalItems"] > 0
            handle.arm_faults([{"kind": "502", "count": 1}])
            assert client.get(path, params={"date": date}).status_code == 502
            assert client.get(path, params={"date": date}).status_code == 200
        process = handle.process
    assert process.poll() is not None, "the stand-in still runs after the block"
    assert "serving https://127.0.0.1:" in log.read_text()


@pytest.mark.slow
def test_a_stand_in_that_cannot_start_is_reported(
    generated: GenerationResult, tmp_path: Path
) -> None:
    with (
        pytest.raises(StandinError, match="exited with status 2"),
        running_standin(generated.feed_dir, tmp_path / "no-certs"),
    ):
        pass
