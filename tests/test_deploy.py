"""The container file and the Kubernetes manifests (deploy/), checked offline: every manifest
against the Kubernetes schemas (kubernetes-validate), and all of them against the Dockerfile
and the code: the user, the port, the writable paths, the probe commands, the environment
variables and the arguments each container runs with."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lez.rules import load_catalog, read_rule_texts
from server.__main__ import _parser as server_parser
from server.auth import load_clients
from server.config import ENV_PREFIX, ServerConfig, build_config
from server.health_probe import ENV_PREFIX as PROBE_PREFIX

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests are meant for (CronJob timeZone is GA from 1.27)."""


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


DOCS = _documents()


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def _pod_specs() -> dict[str, dict[str, Any]]:
    out = {}
    for d in DOCS:
        if d["kind"] in ("Deployment", "Job"):
            out[d["metadata"]["name"]] = d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            out[d["metadata"]["name"]] = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return out


PODS = _pod_specs()
SERVER = PODS["lez-server"]
SERVER_CONTAINER = SERVER["containers"][0]


def _dockerfile() -> dict[str, Any]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]  # the runtime stage
    lines = [line.strip() for line in final.splitlines() if line.strip()]
    out: dict[str, Any] = {"env": {}, "volumes": [], "expose": []}
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "USER":
            out["user"] = rest.strip()
        elif word == "EXPOSE":
            out["expose"] += [int(p) for p in rest.split()]
        elif word == "VOLUME":
            out["volumes"] += yaml.safe_load(rest)
        elif word == "ENV":
            out["env"].update(dict(part.split("=", 1) for part in shlex.split(rest)))
        elif word in ("HEALTHCHECK", "ENTRYPOINT", "CMD"):
            out[word] = rest
    return out


DOCKER = _dockerfile()


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


# -- schemas and wiring --------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_for_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)


def test_the_headless_service_and_the_budget_select_the_server_pods() -> None:
    (deployment,) = _of_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (service,) = _of_kind("Service")
    assert service["spec"]["clusterIP"] == "None"  # headless: DNS names every replica
    assert service["spec"]["selector"].items() <= labels.items()
    (budget,) = _of_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] > budget["spec"]["maxUnavailable"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    ports = {p["name"]: p["containerPort"] for p in SERVER_CONTAINER["ports"]}
    assert ports[service["spec"]["ports"][0]["targetPort"]] == service["spec"]["ports"][0]["port"]


def test_the_store_is_produced_by_jobs_and_read_only_in_the_replicas() -> None:
    claim = {v["name"]: v.get("persistentVolumeClaim", {}) for v in SERVER["volumes"]}
    store_mount = _mounts(SERVER_CONTAINER)[_env(SERVER_CONTAINER)["LEZ_STORE_ROOT"]]
    assert store_mount["readOnly"] is True
    assert claim[store_mount["name"]]["readOnly"] is True
    for job in ("lez-build", "lez-sync"):
        (container,) = PODS[job]["containers"]
        mount = _mounts(container)[_env(container)["LEZ_STORE"]]
        assert not mount.get("readOnly")
        volumes = {v["name"]: v for v in PODS[job]["volumes"]}
        assert (
            volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
            == (claim[store_mount["name"]]["claimName"])
        )
    (cron,) = _of_kind("CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


# -- against the container file -----------------------------------------------------------------


def test_the_image_runs_as_a_non_root_user_with_its_own_ports() -> None:
    uid, gid = (int(x) for x in DOCKER["user"].split(":"))
    assert uid != 0 and gid != 0
    assert DOCKER["expose"] == [c["containerPort"] for c in SERVER_CONTAINER["ports"]]
    assert DOCKER["env"]["LEZ_ADDRESS"].endswith(f":{DOCKER['expose'][0]}")
    assert "lez-server" in DOCKER["ENTRYPOINT"] and "health" in DOCKER["HEALTHCHECK"]
    for name, pod in PODS.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["runAsGroup"] == gid, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def test_every_path_the_processes_write_is_a_writable_volume() -> None:
    server_writes = [_env(SERVER_CONTAINER)["LEZ_AUDIT_DIR"], "/tmp"]
    mounts = _mounts(SERVER_CONTAINER)
    for path in server_writes:
        assert path in mounts and not mounts[path].get("readOnly"), path
    assert set(DOCKER["volumes"]) <= set(mounts)  # every VOLUME of the image is mounted
    assert DOCKER["env"]["LEZ_AUDIT_DIR"] in DOCKER["volumes"]
    assert DOCKER["env"]["LEZ_STORE_ROOT"] in DOCKER["volumes"]
    # one audit directory per replica: the server refuses one another server holds
    assert mounts[server_writes[0]]["subPathExpr"] == "$(POD_NAME)"
    for job in ("lez-build", "lez-sync"):
        (container,) = PODS[job]["containers"]
        job_mounts = _mounts(container)
        for path in (_env(container)["LEZ_STORE"], "/tmp"):
            assert path in job_mounts and not job_mounts[path].get("readOnly"), (job, path)


def test_every_file_named_in_the_environment_is_in_a_mounted_volume() -> None:
    for name, pod in PODS.items():
        for container in pod["containers"]:
            mounts = _mounts(container)
            for var, value in _env(container).items():
                if value.startswith("/etc/lez/"):
                    assert os.path.dirname(value) in mounts, (name, var)


def test_every_environment_variable_is_one_the_code_reads() -> None:
    server_vars = {ENV_PREFIX + f.upper() for f in ServerConfig.__dataclass_fields__}
    probe_vars = {
        PROBE_PREFIX + name.upper()
        for name in ("address", "tls_ca", "tls_cert", "tls_key", "server_name", "timeout")
    }
    loader_vars = set(re.findall(r"LEZ_[A-Z_]+", (ROOT / "loader" / "__main__.py").read_text()))
    known = server_vars | probe_vars | loader_vars
    named = set(DOCKER["env"])
    for pod in PODS.values():
        for container in pod["containers"]:
            named |= {e["name"] for e in container["env"]}
    assert {n for n in named if n.startswith("LEZ_")} <= known
    assert {n for n in _env(SERVER_CONTAINER) if n.startswith("LEZ_")} <= server_vars | probe_vars


# -- against the code ---------------------------------------------------------------------------


def test_the_server_arguments_and_environment_make_a_valid_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var, value in _env(SERVER_CONTAINER).items():
        monkeypatch.setenv(var, value)
    args = server_parser().parse_args(SERVER_CONTAINER["args"])
    config = build_config(args)
    assert config.tls  # not on loopback: mutual TLS
    assert config.port == SERVER_CONTAINER["ports"][0]["containerPort"]
    grace = SERVER["terminationGracePeriodSeconds"]
    assert grace > config.grace_period_s + 5  # the preStop sleep, then the server's grace


def test_the_probes_are_lez_server_health_ready_and_live() -> None:
    probes = {k: SERVER_CONTAINER[k]["exec"]["command"] for k in SERVER_CONTAINER if "Probe" in k}
    assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for kind, command in probes.items():
        assert command[:2] == ["lez-server", "health"]
        args = server_parser().parse_args(command[1:])
        assert args.live is (kind != "readinessProbe"), kind
    env = _env(SERVER_CONTAINER)
    assert env["LEZ_PROBE_ADDRESS"].rsplit(":", 1)[1] == env["LEZ_ADDRESS"].rsplit(":", 1)[1]
    assert env["LEZ_PROBE_TLS_CA"] == env["LEZ_TLS_CA"]


def test_the_loader_jobs_run_commands_the_loader_knows() -> None:
    from loader.__main__ import _parser as loader_parser

    for job in ("lez-build", "lez-sync"):
        (container,) = PODS[job]["containers"]
        assert container["command"] == ["lez-loader"]
        args = loader_parser().parse_args(container["args"])
        assert args.command == container["args"][0]
    assert DOCKER["env"]["LEZ_RULES"] == _env(PODS["lez-build"]["containers"][0])["LEZ_RULES"]


def test_the_rules_directory_of_the_image_holds_the_project_rules() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert f"COPY rules {DOCKER['env']['LEZ_RULES']}" in text
    load_catalog(read_rule_texts(ROOT / "rules"))  # what the image copies compiles


def test_the_example_clients_file_is_one_the_server_reads(tmp_path: Path) -> None:
    (config_map,) = _of_kind("ConfigMap")
    path = tmp_path / "clients.toml"
    path.write_text(config_map["data"]["clients.toml"])
    clients = load_clients(path, ServerConfig())
    assert clients and all(c.roles for c in clients.values())
