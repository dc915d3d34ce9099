"""The audit secret: made by `lez-server audit keygen` or on a server's first start (mode 0600,
never overwritten), distinct from the plate key, and where the config says."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from lez.errors import AuditKeyError
from lez.keys import generate_key_file
from server.__main__ import main
from server.audit_keys import ensure_audit_key_file, load_audit_keys
from server.config import parse_serve_args


def test_keygen_writes_a_private_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys" / "audit.key"
    assert main(["audit", "keygen", "--out", str(path)]) == 0
    keys = load_audit_keys(path)
    assert f"wrote audit key {keys.key_id} to {path}" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert main(["audit", "keygen", "--out", str(path)]) == 1
    assert "exists; remove it first" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert before.hex() not in repr(keys) and keys.key_id in repr(keys)


def test_the_plate_key_is_refused_as_audit_key(tmp_path: Path) -> None:
    plate_key = tmp_path / "hmac.key"
    generate_key_file(plate_key)
    with pytest.raises(AuditKeyError, match="is the plate HMAC key; the audit chain needs"):
        load_audit_keys(plate_key)
    with pytest.raises(ValueError, match="--audit-key-file must not be the plate key file"):
        parse_serve_args(["--key-file", str(plate_key), "--audit-key-file", str(plate_key)], {})
    (tmp_path / "junk.key").write_text("hello")
    with pytest.raises(AuditKeyError, match="is not a lez audit key file"):
        load_audit_keys(tmp_path / "junk.key")
    with pytest.raises(AuditKeyError, match=r"cannot read audit key file .*audit keygen"):
        load_audit_keys(tmp_path / "missing.key")


def test_processes_starting_together_share_one_new_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    created: list[bool] = []
    threads = [
        threading.Thread(target=lambda: created.append(ensure_audit_key_file(path)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 1 and len(created) == 8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["audit.key"]  # no temporary file left
    assert load_audit_keys(path).key_id


def test_audit_paths_default_beside_the_plate_key_and_in_the_audit_dir(tmp_path: Path) -> None:
    config = parse_serve_args(
        ["--key-file", str(tmp_path / "k" / "hmac.key"), "--audit-dir", str(tmp_path / "a")], {}
    )
    assert config.audit_key_path == tmp_path / "k" / "audit.key"
    assert config.audit_checkpoint_path == tmp_path / "a" / "checkpoints"
    env = {"LEZ_AUDIT_CHECKPOINT_RECORDS": "50", "LEZ_AUDIT_CHECKPOINT_S": "5"}
    config = parse_serve_args(["--audit-checkpoint-dir", str(tmp_path / "off")], env)
    assert config.audit_checkpoint_path == tmp_path / "off"
    assert (config.audit_checkpoint_records, config.audit_checkpoint_s) == (50, 5.0)
    with pytest.raises(ValueError, match="audit_checkpoint_records must be positive"):
        parse_serve_args(["--audit-checkpoint-records", "0"], {})
