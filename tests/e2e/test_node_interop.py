"""Interop from another gRPC stack: Node's @grpc/grpc-js with @grpc/proto-loader calls `Check`
and `CheckStream` (packed columns built with Node Buffers) on a running server, and its answers
must equal the Python client's.

The Node packages are installed on first use into `var/node` (git-ignored) with
`npm install --prefix`; the test skips, saying why, only where node or npm is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import LezClient
from lez.days import from_day
from lez.keys import PlateKeyer, generate_key_file, load_key
from server.config import ServerConfig
from tests.server.conftest import DAY, PERMIT_PLATE, UNKNOWN_PLATE, ServerThread, build_store

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "var" / "node"
PROTO_ROOT = REPO / "proto"
PACKAGES = ("@grpc/grpc-js@^1.10", "@grpc/proto-loader@^0.7")
NPM_TIMEOUT_S = 300
NODE_TIMEOUT_S = 60
ZONE = "Gent"
PLATES = ["1-ABC-234", "1XYZ987", "#", PERMIT_PLATE, UNKNOWN_PLATE, "1abc234", "1ELE001"]

NODE_SCRIPT = r"""
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const [protoRoot, target, zone, day, platesJson] = process.argv.slice(2);
const plates = JSON.parse(platesJson);
const def = loader.loadSync('lez/api/v1/access.proto', {
  includeDirs: [protoRoot], keepCase: true, enums: String, longs: Number, defaults: true,
});
const api = grpc.loadPackageDefinition(def).lez.api.v1;
const client = new api.AccessService(target, grpc.credentials.createInsecure());
const dayText = new Date(Number(day) * 86400000).toISOString().slice(0, 10);

function check(plate) {
  return new Promise((resolve, reject) => client.Check(
    { plate, zone, date: dayText }, (err, resp) => err ? reject(err) : resolve(resp)));
}

function stream() {
  return new Promise((resolve, reject) => {
    const call = client.CheckStream();
    const out = { outcomes: [], reasons: [], allowed_until: [], summary: null };
    call.on('data', (msg) => {
      if (msg.summary) { out.summary = msg.summary; return; }
      for (const b of msg.outcome) out.outcomes.push(b);
      for (const b of msg.reason) out.reasons.push(b);
      for (let i = 0; i < msg.count; i++) {
        out.allowed_until.push(msg.allowed_until.readInt32LE(4 * i));
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
    const data = Buffer.from(plates.join(''), 'ascii');
    const offsets = Buffer.alloc(4 * (plates.length + 1));
    let pos = 0;
    plates.forEach((p, i) => { offsets.writeUInt32LE(pos, 4 * i); pos += p.length; });
    offsets.writeUInt32LE(pos, 4 * plates.length);
    const days = Buffer.alloc(4 * plates.length);
    plates.forEach((_, i) => days.writeInt32LE(Number(day), 4 * i));
    const countries = Buffer.from('BE'.repeat(plates.length), 'ascii');
    // two chunks, to check the order of the answers
    const half = 3;
    const sub = (a, b) => ({
      data: data.subarray(offsets.readUInt32LE(4 * a), offsets.readUInt32LE(4 * b)),
      offsets: Buffer.from(Array.from({ length: b - a + 1 }, (_, k) => {
        const o = Buffer.alloc(4);
        o.writeUInt32LE(offsets.readUInt32LE(4 * (a + k)) - offsets.readUInt32LE(4 * a));
        return [...o];
      }).flat()),
    });
    call.write({ zone, chunk_id: 1, plates: sub(0, half),
                 countries: countries.subarray(0, 2 * half), days: days.subarray(0, 4 * half) });
    call.write({ zone, chunk_id: 2, plates: sub(half, plates.length),
                 countries: countries.subarray(2 * half), days: days.subarray(4 * half) });
    call.end();
  });
}

(async () => {
  const checks = [];
  for (const p of plates) {
    const r = await check(p);
    checks.push({ outcome: r.decision.outcome, reason: r.decision.reason,
                  allowed_until: r.decision.allowed_until, open_ended: r.decision.open_ended,
                  euro: r.decision.euro, snapshot_id: r.snapshot_id });
  }
  const streamed = await stream();
  console.log(JSON.stringify({ checks, streamed }));
  client.close();
})().catch((e) => { console.error(String(e && e.message)); process.exit(1); });
"""


def _node_ready() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node interop test (not installed here)")
    if (
        not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists()
        or not (NODE_DIR / "node_modules" / "@grpc" / "proto-loader").exists()
    ):
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"npm install into {NODE_DIR} failed:\n{proc.stderr[-2000:]}")
    script = NODE_DIR / "interop.js"
    script.write_text(NODE_SCRIPT)
    return script


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    base = tmp_path_factory.mktemp("interop")
    key = base / "hmac.key"
    generate_key_file(key)
    keyer: PlateKeyer = load_key(key)
    build_store(base / "store", keyer)
    config = ServerConfig(
        address="127.0.0.1:0",
        store_root=base / "store",
        key_file=key,
        audit_dir=base / "audit",
        warm_store=False,
        grace_period_s=1.0,
    ).validate()
    s = ServerThread(config)
    yield s
    s.stop()


@pytest.mark.slow
def test_node_client_gets_the_python_clients_answers(server: ServerThread) -> None:
    script = _node_ready()
    proc = subprocess.run(
        [
            "node",
            str(script),
            str(PROTO_ROOT),
            server.target,
            ZONE,
            str(DAY),
            json.dumps(PLATES),
        ],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        cwd=NODE_DIR,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    with LezClient([server.target]) as client:
        singles = [client.check(p, zone=ZONE, day=from_day(DAY)) for p in PLATES]
        batch = client.check_batch([(p, "BE", DAY) for p in PLATES], zone=ZONE)
    for node, py in zip(got["checks"], singles, strict=True):
        assert node["outcome"] == f"OUTCOME_{py.outcome}"
        assert node["reason"] == f"REASON_{py.reason}"
        assert node["open_ended"] == py.open_ended
        assert (node["allowed_until"] or None) == (
            py.allowed_until.isoformat() if py.allowed_until else None
        )
        assert (node["euro"] or None) == py.euro
        assert node["snapshot_id"] == py.snapshot_id
    streamed = got["streamed"]
    assert streamed["outcomes"] == batch.outcome.tolist()
    assert streamed["reasons"] == batch.reason.tolist()
    assert streamed["allowed_until"] == batch.allowed_until.tolist()
    assert int(streamed["summary"]["pairs"]) == len(PLATES)
    assert int(streamed["summary"]["chunks"]) == 2
