"""The chart fails early and is operable: broken values stop ``helm install``
and ``helm template``; HA rolls out; namespaceOverride, common labels and
annotations reach every object; forge CA and proxy are wired; the alert rules
and KEDA objects render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.test_rollout import MAX_SURGE, MAX_UNAVAILABLE

from .conftest import CHART, NAMESPACE, RELEASE, missing_secret_sets
from .test_chart import ALL_FEATURES, FULLNAME, _check_offline, _scaler_container

pytestmark = pytest.mark.helm

ALERTS = CHART / "files" / "alerts.yaml"

BAD_POOL = {"name": "p", "forge": "gitea", "provider": "kubernetes", "labels": ["x"], "min_idle": 5, "max": 2}
# The broken values issue 13 lists (and a few more), as --set arguments, with
# what the error must name.
BROKEN: list[tuple[str, list[str], str]] = [
    ("memory limit not a quantity", ["--set-string", "resources.limits.memory=lots"], "/resources/limits/memory"),
    ("cpu request not a quantity", ["--set-string", "resources.requests.cpu=fast"], "/resources/requests/cpu"),
    ("scrape interval not a duration", ["--set-string", "serviceMonitor.interval=abc"], "/serviceMonitor/interval"),
    ("no secret at all", ["--set", "secret.create=false"], "existingSecret"),
    (
        "min_idle over max",
        ["--set-json", f"config.pools=[{json.dumps(BAD_POOL)}]"],
        "config.pools[0].max: must be >= min_idle (got 2 < 5)",
    ),
    ("ingress hosts null", ["--set", "ingress.enabled=true", "--set", "ingress.hosts=null"], "hosts"),
    ("ingress without hosts", ["--set", "ingress.enabled=true", "--set-json", "ingress.hosts=[]"], "/ingress/hosts"),
    ("fsGroup not our group", ["--set", "podSecurityContext.fsGroup=1000"], "must equal runAsGroup"),
    ("cache size", ["--set", "cacheServer.enabled=true", "--set-string", "cacheServer.persistence.size=big"], "size"),
    ("unknown alert", ["--set-string", "prometheusRule.for.NoSuchAlert=5m"], "NoSuchAlert"),
    ("bad proxy", ["--set-string", "proxy.httpsProxy=proxy:3128"], "/proxy/httpsProxy"),
    ("two CA sources", ["--set-string", "forgeCA.configMap=a", "--set-string", "forgeCA.secret=b"], "forgeCA"),
    ("bad namespaceOverride", ["--set-string", "namespaceOverride=Not_A_Namespace"], "namespaceOverride"),
]
CREDS = ["--set-string", "secret.forges.gitea.token=t", "--set-string", "secret.forges.gitea.webhookSecret=w"]


@pytest.mark.parametrize("verb", ["install", "template"])
@pytest.mark.parametrize(("args", "where"), [(a, w) for _, a, w in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_broken_values_fail_install_and_template(helm: Any, verb: str, args: list[str], where: str) -> None:
    """helm install (and template) refuse each broken value with an error naming it, before any pod exists."""
    extra = ["--dry-run=client"] if verb == "install" else []
    creds = [] if "secret.create=false" in args else CREDS
    proc = helm(verb, RELEASE, str(CHART), "--namespace", NAMESPACE, *extra, *creds, *args)
    assert proc.returncode != 0, f"helm {verb} accepted {args}"
    assert where in proc.stderr, proc.stderr


def test_the_same_values_install_when_fixed(helm: Any) -> None:
    """The control: the defaults plus credentials install (client dry-run)."""
    proc = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *CREDS)
    assert proc.returncode == 0, proc.stderr


def test_no_secret_needed_when_every_forge_names_its_own(render: Any) -> None:
    """secret.create=false without existingSecret is fine when no forge reads the chart's Secret."""
    forge = {
        "name": "gitea",
        "type": "gitea",
        "url": "https://gitea.example.com",
        "scope": {"kind": "organization", "name": "x"},
        "token_env": "GITEA_TOKEN",
        "webhook_secret_envs": ["GITEA_HOOK"],
    }
    r = render(values={"secret": {"create": False}, "config": {"forges": [forge]}}, secrets=False)
    assert not r.of_kind("Secret")


def test_ha_strategy_matches_the_rollout_model(render: Any) -> None:
    """With election, 1, 2 and 3 replicas get the strategy test_rollout.py rolls out, and every replica is Ready."""
    for replicas in (1, 2, 3):
        sets: dict[str, Any] = {"replicaCount": replicas, "leaderElection.enabled": True}
        dep = render(sets=sets).one("Deployment", FULLNAME)
        assert dep["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": MAX_UNAVAILABLE},
        }
        c = _scaler_container(render(sets=sets))
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e for e in c["env"]}
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_pdb_allows_a_drain(render: Any) -> None:
    """The PDB lets one Ready replica go at a time, and never waits on an unhealthy one."""
    pdb = render(sets={"replicaCount": 3}).one("PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_secret_mode_and_fsgroup_are_what_the_scaler_accepts(render: Any) -> None:
    """Secret files are 0440 with fsGroup equal to the container's group (scaler.secrets.readable_by_others)."""
    r = render()
    spec = r.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    (vol,) = [v for v in spec["volumes"] if v["name"] == "secrets"]
    assert vol["secret"]["defaultMode"] == 0o440
    group = _scaler_container(r)["securityContext"]["runAsGroup"]
    assert spec["securityContext"]["fsGroup"] == group


def _everything(**extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(yaml.safe_dump(ALL_FEATURES))
    values.update(
        namespaceOverride="ops-ns",
        commonLabels={"team": "ci", "cost-centre": "42"},
        commonAnnotations={"owner": "platform@example.com"},
        prometheusRule={"enabled": True},
        forgeCA={"configMap": "forge-ca"},
        proxy={"httpsProxy": "http://proxy.example.com:3128"},
    )
    values["config"] = {
        "pools": [
            {"name": "default", "forge": "gitea", "provider": "kubernetes", "labels": ["ubuntu-latest:host"]},
            {"name": "keda", "forge": "gitea", "provider": "kubernetes", "labels": ["long:host"], "max": 0},
        ]
    }
    values["keda"] = {"scaledObjects": [{"name": "so", "pool": "keda", "scaleTargetRef": {"name": "runners"}}]}
    values.update(extra)
    return values


def test_namespace_override_common_labels_and_annotations_reach_every_object(render: Any, tmp_path: Path) -> None:
    """Every object and pod template has commonLabels and commonAnnotations; all live in namespaceOverride."""
    r = render(values=_everything())
    kinds = {d["kind"] for d in r.docs}
    assert {"PrometheusRule", "ScaledObject", "ServiceMonitor", "Ingress", "NetworkPolicy", "Secret"} <= kinds
    for doc in r.docs:
        meta = doc["metadata"]
        where = f"{doc['kind']}/{meta['name']}"
        assert {"team": "ci", "cost-centre": "42"}.items() <= meta["labels"].items(), where
        assert meta.get("annotations", {}).get("owner") == "platform@example.com", where
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ScaledObject"):
            assert meta["namespace"] == "ops-ns", where
        template = doc.get("spec", {}).get("template")
        if template:
            assert template["metadata"]["labels"]["team"] == "ci", where
            assert template["metadata"]["annotations"]["owner"] == "platform@example.com", where
    cfg = r.config()
    assert cfg["leader_election"]["namespace"] == "ops-ns"
    assert r.one("ServiceMonitor")["spec"]["namespaceSelector"]["matchNames"] == ["ops-ns"]
    (binding,) = [b for b in r.of_kind("RoleBinding") if b["metadata"]["name"].endswith("-leader-election")]
    assert binding["metadata"]["namespace"] == "ops-ns" and binding["subjects"][0]["namespace"] == "ops-ns"
    _check_offline(cfg, tmp_path)


def test_the_chart_labels_win_over_common_labels(render: Any) -> None:
    """A commonLabels entry cannot change the selector labels."""
    r = render(values={"commonLabels": {"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "x"}})
    dep = r.one("Deployment", FULLNAME)
    assert dep["metadata"]["labels"]["app.kubernetes.io/name"] == "runner-scaler"
    assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == "scaler"


def test_forge_ca_bundle_and_proxy_are_wired(render: Any) -> None:
    """forgeCA mounts the bundle and names it in SSL_CERT_FILE; proxy sets the proxy variables."""
    r = render(values={"forgeCA": {"secret": "corp-ca", "key": "bundle.pem"}, "proxy": {"httpsProxy": "http://p:3128"}})
    c = _scaler_container(r)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SSL_CERT_FILE"] == "/etc/runner-scaler/forge-ca/ca.crt"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://p:3128"
    assert ".svc" in env["NO_PROXY"] and "HTTP_PROXY" not in env
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "forge-ca"]
    assert mount["mountPath"] == "/etc/runner-scaler/forge-ca" and mount["readOnly"]
    spec = r.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    (vol,) = [v for v in spec["volumes"] if v["name"] == "forge-ca"]
    assert vol["secret"]["secretName"] == "corp-ca"
    assert vol["secret"]["items"] == [{"key": "bundle.pem", "path": "ca.crt"}]
    plain = {e["name"] for e in _scaler_container(render())["env"]}
    assert not plain & {"SSL_CERT_FILE", "HTTPS_PROXY", "NO_PROXY"}


def test_prometheus_rule_renders_the_rule_file(render: Any) -> None:
    """The PrometheusRule holds files/alerts.yaml, with per-alert `for`, extra labels and alerts left out."""
    shipped = yaml.safe_load(ALERTS.read_text())
    plain = render(values={"prometheusRule": {"enabled": True}}).one("PrometheusRule")
    assert plain["spec"]["groups"] == shipped["groups"]
    values = {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "ci"},
            "for": {"RunnerScalerDemandWithoutSupply": "20m"},
            "disabled": ["RunnerScalerSplitBrain"],
        }
    }
    rule = render(values=values).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert "RunnerScalerSplitBrain" not in rules and len(rules) == len(shipped["groups"][0]["rules"]) - 1
    assert rules["RunnerScalerDemandWithoutSupply"]["for"] == "20m"
    assert all(r["labels"]["team"] == "ci" and r["labels"]["severity"] for r in rules.values())
    assert not render().of_kind("PrometheusRule")


def test_schema_alert_names_are_the_rule_files() -> None:
    """prometheusRule.for / disabled accept exactly the alerts files/alerts.yaml defines."""

    schema = json.loads((CHART / "values.schema.json").read_text())
    names = [r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    pr = schema["properties"]["prometheusRule"]["properties"]
    assert pr["for"]["propertyNames"]["enum"] == names and pr["disabled"]["items"]["enum"] == names


def test_keda_scaled_objects_render_for_both_sources(render: Any, render_error: Any) -> None:
    """keda.scaledObjects renders metrics-api or Prometheus triggers on the pool's demand; an unknown pool fails."""
    objs = [
        {"name": "api", "pool": "default", "scaleTargetRef": {"name": "runners"}},
        {
            "name": "prom",
            "pool": "default",
            "scaleTargetRef": {"name": "runners"},
            "source": "prometheus",
            "serverAddress": "http://prometheus.monitoring.svc:9090",
            "targetValue": 2,
        },
    ]
    r = render(values={"keda": {"scaledObjects": objs}})
    api, prom = (r.one("ScaledObject", n) for n in ("api", "prom"))
    assert api["metadata"]["namespace"] == NAMESPACE
    assert api["spec"]["triggers"][0]["metadata"]["url"] == (
        f"http://{FULLNAME}.{NAMESPACE}.svc:8080/api/v1/pools/default"
    )
    assert prom["spec"]["triggers"][0]["metadata"]["query"] == 'sum(runner_scaler_queued_jobs{pool="default"})'
    assert prom["spec"]["triggers"][0]["metadata"]["threshold"] == "2"
    err = render_error(values={"keda": {"scaledObjects": [dict(objs[0], pool="nope")]}})
    assert 'keda.scaledObjects[0].pool: no pool named "nope"' in err
    err = render_error(values={"keda": {"scaledObjects": [dict(objs[1], serverAddress=None)]}})
    assert "serverAddress" in err


def test_missing_secret_helper_matches_the_chart() -> None:
    """The test helper asks for exactly the keys the chart requires for the defaults."""
    assert missing_secret_sets() == {
        "secret.forges.gitea.token": "test-forge-token",
        "secret.forges.gitea.webhookSecret": "test-webhook-secret",
    }


def test_dashboard_has_a_panel_for_every_metric_an_alert_pages_on() -> None:
    """Each metric the alert rules use is drawn by some dashboard panel, and each alert is named in a description."""
    import re

    dash = json.loads((CHART / "dashboards" / "runner-scaler.json").read_text())
    drawn = "\n".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    described = "\n".join(p.get("description", "") for p in dash["panels"])
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        for metric in set(re.findall(r"runner_scaler_[a-z_]+", rule["expr"])):
            base = re.sub(r"_(count|bucket|sum)$", "", metric)
            assert metric in drawn or base in drawn, f"{rule['alert']} uses {metric}, which no panel draws"
        assert rule["alert"] in described, f"no panel names {rule['alert']}"
    for metric in ("event_queue_depth", "in_progress_jobs", "inflight_operations", "leader", "unservable_jobs"):
        assert f"runner_scaler_{metric}" in drawn
