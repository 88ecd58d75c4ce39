"""Deployment examples, KEDA objects, the Grafana dashboard, the image and the
CI service script: each checked against what it claims to work with."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.config import parse_config

from .conftest import CHART, EXAMPLES, REPO
from .manifests import strict_check

pytestmark = pytest.mark.helm

CONFIG_EXAMPLES = [EXAMPLES / "forgejo-docker" / "config.yaml", EXAMPLES / "github-libvirt" / "config.yaml"]
UNIT = EXAMPLES / "forgejo-docker" / "runner-scaler.service"
NIX = EXAMPLES / "nixos" / "module.nix"
DASHBOARD = CHART / "dashboards" / "runner-scaler.json"
KEDA = sorted((EXAMPLES / "keda").glob("scaledobject-*.yaml"))
KEDA_VALUES = EXAMPLES / "keda" / "values.yaml"

HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
}


def _known_metrics() -> set[str]:
    """Every series name the scaler can export (histograms add _bucket/_sum/_count)."""
    names: set[str] = set()
    for path in [*REPO.joinpath("scaler").rglob("*.py"), *REPO.joinpath("providers").rglob("*.py")]:
        names.update(re.findall(r"\"(runner_scaler_[a-z_]+)\"", path.read_text(encoding="utf-8")))
    out = set(names)
    for n in names:
        out.update({f"{n}_bucket", f"{n}_sum", f"{n}_count"})
    return out


def _unit(path: Path) -> dict[str, list[str]]:
    """systemd unit [Service] directives → all their values (keys repeat, so not configparser)."""
    values: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def _check_offline(config: dict[str, Any], tmp_path: Path) -> None:
    """``runner-scaler check --offline`` with the credentials stood in by local files."""
    cfg = json.loads(json.dumps(config))

    def swap(path: str) -> str:
        target = tmp_path / Path(path).name
        target.write_text("stand-in-secret-value\n", encoding="utf-8")
        target.chmod(0o600)
        return str(target)

    for forge in cfg["forges"]:
        if "token_file" in forge:
            forge["token_file"] = swap(forge["token_file"])
        forge["webhook_secret_files"] = [swap(p) for p in forge.get("webhook_secret_files", [])]
        if "github_app" in forge:
            forge["github_app"]["private_key_file"] = swap(forge["github_app"]["private_key_file"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "scaler.cli", "check", "--offline", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"check --offline rejected it:\n{proc.stdout}{proc.stderr}"


# --- config examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIG_EXAMPLES, ids=lambda p: p.parent.name)
def test_config_example_is_valid_and_says_what_it_assumes(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "Assumes:" in text
    config = yaml.safe_load(text)
    parse_config(config)
    _check_offline(config, tmp_path)
    # Loopback listener behind a TLS proxy; secrets only as files.
    assert config["server"]["host"] == "127.0.0.1"
    for forge in config["forges"]:
        assert forge["url"].startswith("https://")


def test_every_example_says_what_it_assumes() -> None:
    files = [*CONFIG_EXAMPLES, UNIT, NIX, *KEDA, EXAMPLES / "gitea-kubernetes" / "values.yaml"]
    for p in files:
        assert re.search(r"\bAssumes:", p.read_text(encoding="utf-8")), f"{p} does not say what it assumes"


# --- systemd unit and NixOS module ---------------------------------------------------------------


def test_systemd_unit_is_hardened() -> None:
    unit = _unit(UNIT)
    for key, value in HARDENING.items():
        assert unit.get(key) == [value], f"{key}={unit.get(key)}"
    filters = unit["SystemCallFilter"]
    assert filters[0] == "@system-service"
    denied = set(filters[1].lstrip("~").split())
    assert {"@privileged", "@mount", "@debug", "@module", "@raw-io", "@reboot", "@swap", "@obsolete"} <= denied
    assert filters[1].startswith("~")
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert not any("Environment" in k and ("TOKEN" in v[0] or "SECRET" in v[0]) for k, v in unit.items())


def test_systemd_unit_credentials_match_the_config() -> None:
    unit = _unit(UNIT)
    creds = {c.split(":", 1)[0] for c in unit["LoadCredential"]}
    config = yaml.safe_load((EXAMPLES / "forgejo-docker" / "config.yaml").read_text())
    used = set()
    for forge in config["forges"]:
        for path in [forge.get("token_file"), *forge.get("webhook_secret_files", [])]:
            if path:
                assert path.startswith("/run/credentials/runner-scaler.service/"), path
                used.add(path.rsplit("/", 1)[1])
    assert used == creds
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[1:] == ["serve", "--config", "/etc/runner-scaler/config.yaml"]
    assert unit["ExecStartPre"][0].split()[1:3] == ["check", "--offline"]


def systemd_verify(unit: Path) -> None:
    """``systemd-analyze verify`` of a unit file: fails on any complaint about it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd): cannot verify the unit")
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False, cwd=unit.parent
    )
    noise = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if unit.name in line or "Unknown" in line or "Failed to parse" in line
    ]
    assert proc.returncode == 0 and not noise, proc.stdout + proc.stderr


def verify_example_unit(example: Path, tmp_path: Path) -> None:
    """An example unit, its /usr/local/bin/runner-scaler stood in by a stub, through systemd_verify."""
    stub = tmp_path / "runner-scaler"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "runner-scaler.service"
    unit.write_text(example.read_text().replace("/usr/local/bin/runner-scaler", str(stub)))
    systemd_verify(unit)


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    verify_example_unit(UNIT, tmp_path)


def test_nixos_module_has_the_same_hardening() -> None:
    text = NIX.read_text(encoding="utf-8")
    assert text.count("{") == text.count("}") and text.count("[") == text.count("]")
    for key, value in HARDENING.items():
        nix_value = {"yes": "true", "": '""'}.get(value, f'"{value}"')
        assert re.search(rf"\b{key} = {re.escape(nix_value)};", text), f"{key} = {nix_value} missing"
    assert "LoadCredential" in text and "/run/credentials/runner-scaler.service/" in text
    assert '"@system-service"' in text and "~@privileged" in text
    assert "check --offline" in text and "serve --config" in text
    assert "services.runner-scaler" in text and "mkEnableOption" in text
    unit_filters = _unit(UNIT)["SystemCallFilter"]
    for f in unit_filters:
        assert f'"{f}"' in text, f"SystemCallFilter {f} differs from the unit"


# --- KEDA ----------------------------------------------------------------------------------------


def test_keda_examples(render: Any) -> None:
    assert {p.name for p in KEDA} == {"scaledobject-prometheus.yaml", "scaledobject-metrics-api.yaml"}
    keda_values = render(KEDA_VALUES)
    # The pool set-up the examples are for: a pool at max 0, whose demand KEDA serves.
    pools = {p["name"] for p in keda_values.config()["pools"] if p.get("max") == 0}
    assert pools == {"long-lived"}
    seen = set()
    for path in KEDA:
        assert "Assumes:" in path.read_text()
        (obj,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert (obj["apiVersion"], obj["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
        assert not strict_check(obj)
        assert obj["spec"]["scaleTargetRef"]["name"]
        (trigger,) = obj["spec"]["triggers"]
        meta = trigger["metadata"]
        seen.add(trigger["type"])
        if trigger["type"] == "prometheus":
            m = re.fullmatch(r'sum\(runner_scaler_queued_jobs\{pool="([a-z0-9-]+)"\}\)', meta["query"])
            assert m and m.group(1) in pools
            assert "runner_scaler_queued_jobs" in _known_metrics()
        else:
            assert trigger["type"] == "metrics-api"
            assert meta["valueLocation"] == "queued" and meta["format"] == "json"
            m = re.fullmatch(r"http://runner-scaler\.runner-scaler\.svc:8080/api/v1/pools/([a-z0-9-]+)", meta["url"])
            assert m and m.group(1) in pools
        for key in ("threshold", "targetValue", "activationThreshold", "activationTargetValue"):
            if key in meta:
                assert isinstance(meta[key], str), f"KEDA wants {key} as a string"
    assert seen == {"prometheus", "metrics-api"}


def test_the_chart_renders_the_keda_example(render: Any) -> None:
    """examples/keda/values.yaml renders the same metrics-api ScaledObject as the hand-written example."""
    (rendered,) = render(KEDA_VALUES).of_kind("ScaledObject")
    by_hand = yaml.safe_load((EXAMPLES / "keda" / "scaledobject-metrics-api.yaml").read_text())
    assert not strict_check(rendered)
    assert rendered["metadata"]["namespace"] == by_hand["metadata"]["namespace"] == "ci-runners"
    assert rendered["spec"]["scaleTargetRef"] == {"kind": "Deployment", "name": "gitea-runner"}
    (got,), (want,) = rendered["spec"]["triggers"], by_hand["spec"]["triggers"]
    assert got["type"] == want["type"] == "metrics-api"
    # The example assumes the release "runner-scaler" in "runner-scaler"; rendered here as rs in runner-scaler.
    release_url = want["metadata"]["url"].replace("runner-scaler.runner-scaler", "rs-runner-scaler.runner-scaler")
    assert got["metadata"]["url"] == release_url
    for key in ("format", "valueLocation", "targetValue", "activationTargetValue"):
        assert got["metadata"][key] == want["metadata"][key], key


def test_keda_metrics_api_url_is_the_chart_service(helm: Any) -> None:
    """Installed as the example says (release runner-scaler in namespace runner-scaler),
    the chart's Service is the host the metrics-api ScaledObject calls."""
    proc = helm(
        "template",
        "runner-scaler",
        str(CHART),
        "--namespace",
        "runner-scaler",
        "-f",
        str(EXAMPLES / "gitea-kubernetes" / "values.yaml"),
        "--show-only",
        "templates/service.yaml",
        check=True,
    )
    svc = yaml.safe_load(proc.stdout)
    assert svc["metadata"]["name"] == "runner-scaler" and svc["metadata"]["namespace"] == "runner-scaler"
    assert svc["spec"]["ports"][0]["port"] == 8080


# --- Grafana -------------------------------------------------------------------------------------


def test_dashboard_queries_only_metrics_the_scaler_exports() -> None:
    dash = json.loads(DASHBOARD.read_text())
    known = _known_metrics()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"runner_scaler_[a-z_]+", expr):
            assert name in known, f"dashboard queries {name}, which the scaler does not export"
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for want in ("queue depth", "job wait", "instances by state", "errors", "rate-limit"):
        assert want in titles
    joined = "\n".join(exprs)
    assert "histogram_quantile(0.5," in joined and "histogram_quantile(0.95," in joined
    assert "runner_scaler_forge_rate_limit_remaining" in joined
    assert 'operation=~"create|delete"' in joined
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "pool"}


# --- image ---------------------------------------------------------------------------------------


def test_dockerfile_matches_the_chart() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "USER 65532:65532" in text
    assert '"runner-scaler"]' in text.split("ENTRYPOINT", 1)[1].splitlines()[0]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/runner-scaler/runner-scaler"
    assert values["securityContext"]["runAsUser"] == 65532 == values["podSecurityContext"]["fsGroup"]
    assert "EXPOSE 8080" in text


# --- the CI service script -----------------------------------------------------------------------


def test_helm_service_script_is_idempotent(helm_bin: str) -> None:
    script = REPO / ".ci" / "services" / "helm.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_SCALER_TEST_")}
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{script}" && helm_install && helm_start && helm_stop && '
            'echo "HELM=$RUNNER_SCALER_TEST_HELM" && echo "KUBECTL=$RUNNER_SCALER_TEST_KUBECTL"',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "using cached" in proc.stderr  # .ci/run installed it already: nothing fetched again
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert os.path.samefile(out["HELM"], helm_bin)
    version = subprocess.run([out["HELM"], "version", "--short"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v4.")
    kubectl = subprocess.run([out["KUBECTL"], "version", "--client"], capture_output=True, text=True, check=True)
    assert "Client Version" in kubectl.stdout
