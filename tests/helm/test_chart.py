"""The Helm chart, rendered and linted by the real helm binary.

Everything here runs ``helm`` (v4, from .ci/services/helm.sh) against
charts/runner-scaler and checks what an operator would get from ``helm
install``: hardened pods, least-privilege RBAC, a config the scaler accepts,
and values the schema refuses.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.kubernetes import _provider as k8s_provider
from scaler.config import parse_config

from .conftest import CHART, NAMESPACE, RELEASE, Rendered, example_values_files
from .manifests import pod_specs, security_problems, strict_check

pytestmark = pytest.mark.helm

FULLNAME = f"{RELEASE}-runner-scaler"
SECRETS_DIR = "/etc/runner-scaler/secrets"
GITEA_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitea-kubernetes" / "values.yaml"

# What the Kubernetes provider and the leader elector call, and nothing more:
# the provider declares it (and `check` verifies it with SelfSubjectAccessReviews).
RUNNER_RULES = {(group, resource): set(verbs) for group, resource, verbs in k8s_provider.REQUIRED_PERMISSIONS}
LEASE_RULES = {(group, resource): set(verbs) for group, resource, verbs in k8s_provider.LEADER_ELECTION_PERMISSIONS}

# Every optional part switched on, to check them all at once.
ALL_FEATURES: dict[str, Any] = {
    "replicaCount": 3,
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "hosts": [{"host": "hooks.example.com"}],
        "tls": [{"secretName": "hooks-tls", "hosts": ["hooks.example.com"]}],
    },
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["127.0.0.1/32"]}, "forge": {"cidrs": ["127.0.0.2/32"]}},
    "cacheServer": {"enabled": True, "image": {"tag": "0.3.0"}, "persistence": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
    "secret": {"forges": {"gitea": {"token": "t0ken-value", "webhookSecret": "hook-secret"}}},
}


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def _scaler_container(r: Rendered) -> dict[str, Any]:
    dep = r.one("Deployment", FULLNAME)
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "runner-scaler"]
    return c


def _with_local_secrets(config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The config with every mounted secret file replaced by a local stand-in
    (mode 0600), the way the Secret volume provides them in the pod."""
    local = tmp_path / "secrets"
    local.mkdir(exist_ok=True)

    def swap(path: str) -> str:
        assert path.startswith(SECRETS_DIR + "/"), f"secret file outside the mounted Secret: {path}"
        target = local / path.rsplit("/", 1)[1]
        target.write_text("stand-in-secret-value\n", encoding="utf-8")
        target.chmod(0o600)
        return str(target)

    out = json.loads(json.dumps(config))
    for forge in out["forges"]:
        if "token_file" in forge:
            forge["token_file"] = swap(forge["token_file"])
        forge["webhook_secret_files"] = [swap(p) for p in forge.get("webhook_secret_files", [])]
        if isinstance(forge.get("github_app"), dict) and "private_key_file" in forge["github_app"]:
            forge["github_app"]["private_key_file"] = swap(forge["github_app"]["private_key_file"])
        if "cache_secret_file" in forge.get("options", {}):
            forge["options"]["cache_secret_file"] = swap(forge["options"]["cache_secret_file"])
    return out


def _check_offline(config: dict[str, Any], tmp_path: Path) -> None:
    """The rendered config must pass the scaler's own validation:
    ``runner-scaler check --offline`` (config, provider options, secret files)."""
    parse_config(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_with_local_secrets(config, tmp_path)), encoding="utf-8")
    if importlib.util.find_spec("scaler.cli") is not None:
        proc = subprocess.run(
            [sys.executable, "-m", "scaler.cli", "check", "--offline", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, (
            f"runner-scaler check --offline rejected the rendered config:\n{proc.stdout}{proc.stderr}"
        )
    else:
        from scaler.config import load_config

        load_config(path)


# --- lint and render -----------------------------------------------------------------------------


def test_lint_strict_default_values(helm: Any) -> None:
    """The defaults lint clean once the forge's credentials are given (the chart never makes them up)."""
    creds = ["--set-string", "secret.forges.gitea.token=t", "--set-string", "secret.forges.gitea.webhookSecret=w"]
    helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *creds, check=True)


@pytest.mark.parametrize("values", example_values_files(), ids=lambda p: p.parent.name)
def test_lint_strict_example_values(helm: Any, values: Path) -> None:
    helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values), check=True)


def test_defaults_alone_are_refused_naming_the_credential(helm: Any) -> None:
    """Without a token or webhook secret helm install fails, naming the value to set and the existingSecret way."""
    proc = helm("install", "rs", str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert proc.returncode != 0
    assert "secret.forges.gitea.token: required" in proc.stderr and "secret.existingSecret" in proc.stderr


def test_lint_strict_all_features(helm: Any, values_file: Any) -> None:
    helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values_file(ALL_FEATURES)), check=True)


def test_there_are_example_values() -> None:
    assert GITEA_EXAMPLE in example_values_files()


@pytest.mark.parametrize(
    "case",
    ["default", "gitea-example", "all-features", "cluster-wide"],
)
def test_every_manifest_is_valid_kubernetes(render: Any, case: str) -> None:
    r = {
        "default": lambda: render(),
        "gitea-example": lambda: render(GITEA_EXAMPLE),
        "all-features": lambda: render(values=ALL_FEATURES),
        "cluster-wide": lambda: render(sets={"rbac.clusterWide": True}),
    }[case]()
    problems = [p for d in r.docs for p in strict_check(d)]
    assert not problems, "\n".join(problems)
    for d in r.docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert ns, f"{d['kind']}/{d['metadata']['name']} has no namespace"


# --- the scaler pod ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["default", "gitea-example", "all-features"])
def test_every_container_is_hardened_and_has_resources(render: Any, case: str) -> None:
    r = {
        "default": lambda: render(),
        "gitea-example": lambda: render(GITEA_EXAMPLE),
        "all-features": lambda: render(values=ALL_FEATURES),
    }[case]()
    specs = pod_specs(r.docs)
    assert specs
    if case == "all-features":
        assert {w for w, _ in specs} == {f"Deployment/{FULLNAME}", f"Deployment/{FULLNAME}-cache"}
    problems = [p for where, spec in specs for p in security_problems(where, spec)]
    assert not problems, "\n".join(problems)
    for _, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_scaler_pod_probes_mounts_and_args(render: Any) -> None:
    r = render()
    c = _scaler_container(r)
    assert c["image"] == "ghcr.io/runner-scaler/runner-scaler:0.1.0"
    assert c["args"] == ["serve", "--config", "/etc/runner-scaler/config.yaml"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["securityContext"]["runAsUser"] == 65532
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/tmp"]["name"] == "tmp"
    assert mounts[SECRETS_DIR]["readOnly"] is True
    assert mounts["/etc/runner-scaler/config.yaml"]["subPath"] == "config.yaml"
    spec = r.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in vols["tmp"]
    assert vols["secrets"]["secret"]["secretName"] == FULLNAME
    assert vols["config"]["configMap"]["name"] == FULLNAME
    assert spec["serviceAccountName"] == FULLNAME
    # Config and secret changes roll the pods.
    ann = r.one("Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in ann and "checksum/secret" in ann


def test_image_tag_and_repository_are_values(render: Any) -> None:
    c = _scaler_container(render(sets={"image.repository": "registry.local/rs", "image.tag": "1.2.3"}))
    assert c["image"] == "registry.local/rs:1.2.3"


def test_service_targets_the_scaler_port(render: Any) -> None:
    r = render()
    svc = r.one("Service", FULLNAME)
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    dep = r.one("Deployment", FULLNAME)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())


# --- RBAC ----------------------------------------------------------------------------------------


def test_rbac_is_exactly_what_the_kubernetes_provider_needs(render: Any) -> None:
    r = render()
    assert not r.of_kind("ClusterRole") and not r.of_kind("ClusterRoleBinding")
    (role,) = r.of_kind("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules(role) == RUNNER_RULES
    (binding,) = r.of_kind("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert r.one("ServiceAccount", FULLNAME)


def test_rbac_follows_the_runner_namespaces(render: Any) -> None:
    r = render(GITEA_EXAMPLE)
    runner_roles = [x for x in r.of_kind("Role") if not x["metadata"]["name"].endswith("-leader-election")]
    assert [x["metadata"]["namespace"] for x in runner_roles] == ["ci-runners"]
    assert r.config()["providers"][0]["options"]["namespace"] == "ci-runners"
    # A second kubernetes provider in its own namespace gets its own Role; docker providers none.
    values = {
        "config": {
            "forges": [
                {"name": "gitea", "type": "gitea", "url": "https://g.example.com", "scope": {"kind": "instance"}}
            ],
            "providers": [
                {"name": "k1", "type": "kubernetes"},
                {"name": "k2", "type": "kubernetes", "options": {"namespace": "gpu-runners"}},
                {
                    "name": "d",
                    "type": "docker",
                    "options": {"hosts": [{"name": "local", "url": "unix:///var/run/docker.sock"}]},
                },
            ],
            "pools": [
                {"name": "a", "forge": "gitea", "provider": "k1", "labels": ["a:host"]},
                {"name": "b", "forge": "gitea", "provider": "k2", "labels": ["b:host"]},
                {"name": "c", "forge": "gitea", "provider": "d", "labels": ["c:docker://node:20"]},
            ],
        },
        "rbac": {"extraNamespaces": ["more-runners"]},
    }
    r = render(values=values)
    assert sorted(x["metadata"]["namespace"] for x in r.of_kind("Role")) == ["gpu-runners", "more-runners", NAMESPACE]
    for role in r.of_kind("Role"):
        assert _rules(role) == RUNNER_RULES
    cfg = r.config()
    assert "options" not in cfg["providers"][2] or "namespace" not in cfg["providers"][2]["options"]


def test_cluster_wide_rbac_only_when_asked(render: Any) -> None:
    r = render(sets={"rbac.clusterWide": True})
    (cr,) = r.of_kind("ClusterRole")
    assert _rules(cr) == RUNNER_RULES
    (crb,) = r.of_kind("ClusterRoleBinding")
    assert crb["roleRef"]["name"] == cr["metadata"]["name"]
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert not r.of_kind("Role")


def test_rbac_and_service_account_can_be_left_out(render: Any) -> None:
    r = render(sets={"rbac.create": False, "serviceAccount.create": False, "serviceAccount.name": "mine"})
    assert not r.of_kind("Role") and not r.of_kind("RoleBinding") and not r.of_kind("ServiceAccount")
    assert r.one("Deployment", FULLNAME)["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# --- replicas and leader election ----------------------------------------------------------------


def test_single_replica_has_no_election_no_pdb_and_recreates(render: Any, tmp_path: Path) -> None:
    r = render()
    cfg = r.config()
    assert not cfg.get("leader_election", {}).get("enabled", False)
    assert not r.of_kind("PodDisruptionBudget")
    assert not any(x["metadata"]["name"].endswith("-leader-election") for x in r.of_kind("Role"))
    assert r.one("Deployment", FULLNAME)["spec"]["strategy"] == {"type": "Recreate"}
    _check_offline(cfg, tmp_path)


def test_two_replicas_turn_on_leader_election_and_a_pdb(render: Any, tmp_path: Path) -> None:
    r = render(sets={"replicaCount": 2})
    dep = r.one("Deployment", FULLNAME)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    cfg = r.config()
    le = cfg["leader_election"]
    assert le == {"enabled": True, "namespace": NAMESPACE, "lease_name": FULLNAME}
    parsed = parse_config(cfg)
    assert parsed.leader_election.enabled and parsed.leader_election.namespace == NAMESPACE
    pdb = r.one("PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    lease_role = r.one("Role", f"{FULLNAME}-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert _rules(lease_role) == LEASE_RULES
    # get/update only on our own Lease (create cannot be limited by name).
    for rule in lease_role["rules"]:
        if set(rule["verbs"]) & {"get", "update"}:
            assert rule["resourceNames"] == [FULLNAME]
    binding = r.one("RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    # Replicas spread over nodes by default.
    assert "podAntiAffinity" in dep["spec"]["template"]["spec"]["affinity"]
    _check_offline(cfg, tmp_path)


def test_pdb_can_be_switched_off(render: Any) -> None:
    r = render(sets={"replicaCount": 2, "podDisruptionBudget.enabled": False})
    assert not r.of_kind("PodDisruptionBudget")
    assert r.config()["leader_election"]["enabled"] is True


def test_leader_election_keeps_operator_timings(render: Any) -> None:
    values = {"replicaCount": 2, "config": {"leader_election": {"lease_duration": "30s", "lease_name": "mine"}}}
    # config is replaced wholesale by a values file only at the keys given; forges etc. stay.
    cfg = render(values=values).config()
    assert cfg["leader_election"] == {
        "enabled": True,
        "namespace": NAMESPACE,
        "lease_name": "mine",
        "lease_duration": "30s",
    }
    assert cfg["forges"][0]["name"] == "gitea"


def test_leader_election_without_replicas_when_asked(render: Any) -> None:
    r = render(sets={"leaderElection.enabled": True})
    assert r.config()["leader_election"]["enabled"] is True
    assert not r.of_kind("PodDisruptionBudget")
    assert r.one("Role", f"{FULLNAME}-leader-election")


def test_two_replicas_with_election_switched_off_is_refused(render_error: Any) -> None:
    err = render_error(values={"replicaCount": 2, "config": {"leader_election": {"enabled": False}}})
    assert "leader election" in err


# --- config and secrets --------------------------------------------------------------------------


def test_default_config_is_accepted_by_the_scaler(render: Any, tmp_path: Path) -> None:
    cfg = render().config()
    _check_offline(cfg, tmp_path)
    assert cfg["server"] == {"host": "0.0.0.0", "port": 8080}
    assert cfg["providers"][0]["options"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("values", example_values_files(), ids=lambda p: p.parent.name)
def test_example_values_render_a_config_the_scaler_accepts(render: Any, values: Path, tmp_path: Path) -> None:
    _check_offline(render(values).config(), tmp_path)


def test_all_features_config_is_accepted(render: Any, tmp_path: Path) -> None:
    _check_offline(render(values=ALL_FEATURES).config(), tmp_path)


def test_secret_files_are_wired_into_the_config(render: Any) -> None:
    r = render(values={"secret": {"forges": {"gitea": {"token": "abc123-token\n", "webhookSecret": "s3cret-hook"}}}})
    forge = r.config()["forges"][0]
    assert forge["token_file"] == f"{SECRETS_DIR}/gitea.token"
    assert forge["webhook_secret_files"] == [f"{SECRETS_DIR}/gitea.webhook-secret"]
    secret = r.one("Secret", FULLNAME)
    import base64

    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"gitea.token": "abc123-token", "gitea.webhook-secret": "s3cret-hook"}
    # No secret value ever reaches the ConfigMap.
    assert "abc123-token" not in r.one("ConfigMap", FULLNAME)["data"]["config.yaml"]


def test_webhook_secret_is_never_generated_so_renders_are_stable(render: Any, render_error: Any) -> None:
    """No webhook secret given: the render fails naming it; given: every render yields the same Secret."""
    err = render_error(sets={"secret.forges.gitea.token": "t"}, secrets=False)
    assert "secret.forges.gitea.webhookSecret: required" in err and "openssl rand" in err
    first, second = (render(sets={"secret.forges.gitea.webhookSecret": "stable-hook"}) for _ in range(2))
    assert first.one("Secret", FULLNAME) == second.one("Secret", FULLNAME)
    import base64

    assert base64.b64decode(first.one("Secret", FULLNAME)["data"]["gitea.webhook-secret"]) == b"stable-hook"
    ann = first.one("Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    assert ann == second.one("Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]


def test_github_app_key_is_wired(render: Any, tmp_path: Path) -> None:
    values = {
        "config": {
            "forges": [
                {
                    "name": "github",
                    "type": "github",
                    "url": "https://api.github.com",
                    "scope": {"kind": "organization", "name": "my-org"},
                    "github_app": {"app_id": 123456789, "installation_id": 987654321},
                }
            ],
            "pools": [{"name": "p", "forge": "github", "provider": "kubernetes", "labels": ["self-hosted"]}],
        },
        "secret": {
            "forges": {
                "github": {"githubAppPrivateKey": "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n"}
            }
        },
    }
    r = render(values=values)
    forge = r.config()["forges"][0]
    assert "token_file" not in forge
    assert forge["github_app"] == {
        "app_id": 123456789,
        "installation_id": 987654321,
        "private_key_file": f"{SECRETS_DIR}/github.github-app-key",
    }
    assert set(r.one("Secret", FULLNAME)["data"]) == {"github.github-app-key", "github.webhook-secret"}
    _check_offline(r.config(), tmp_path)


def test_existing_secret_is_mounted_instead(render: Any) -> None:
    r = render(GITEA_EXAMPLE)
    assert not r.of_kind("Secret")
    spec = r.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    (vol,) = [v for v in spec["volumes"] if v["name"] == "secrets"]
    assert vol["secret"]["secretName"] == "runner-scaler-gitea"
    forge = r.config()["forges"][0]
    assert forge["token_file"] == f"{SECRETS_DIR}/gitea.token"


def test_explicit_secret_sources_are_left_alone(render: Any) -> None:
    values = {
        "config": {
            "forges": [
                {
                    "name": "gitea",
                    "type": "gitea",
                    "url": "https://gitea.example.com",
                    "scope": {"kind": "organization", "name": "example"},
                    "token_env": "GITEA_TOKEN",
                    "webhook_secret_envs": ["GITEA_HOOK"],
                }
            ]
        }
    }
    r = render(values=values)
    forge = r.config()["forges"][0]
    assert "token_file" not in forge and "webhook_secret_files" not in forge
    assert not r.one("Secret", FULLNAME).get("data")


def test_pool_referring_to_a_missing_forge_or_provider_is_refused(render_error: Any) -> None:
    forge = {"name": "forgejo", "type": "forgejo", "url": "https://f.example.com", "scope": {"kind": "instance"}}
    # Lists replace the defaults: the default pool still names forge "gitea".
    err = render_error(values={"config": {"forges": [forge]}})
    assert 'config.pools[0].forge: no forge named "gitea"' in err and "have: forgejo" in err
    pool = {"name": "p", "forge": "gitea", "provider": "dockr", "labels": ["x"]}
    err = render_error(values={"config": {"pools": [pool]}})
    assert 'config.pools[0].provider: no provider named "dockr"' in err
    dup = {"name": "kubernetes", "type": "kubernetes"}
    err = render_error(values={"config": {"providers": [dup, dup]}})
    assert "config.providers[1].name: duplicate name" in err


def test_secret_for_an_unknown_forge_is_refused(render_error: Any) -> None:
    err = render_error(values={"secret": {"forges": {"gittea": {"token": "x"}}}})
    assert "no forge named" in err and "gittea" in err


# --- optional parts ------------------------------------------------------------------------------


def test_optional_parts_are_off_by_default(render: Any) -> None:
    kinds = {d["kind"] for d in render().docs}
    assert kinds == {"ServiceAccount", "Secret", "ConfigMap", "Role", "RoleBinding", "Service", "Deployment"}


def test_ingress_exposes_only_webhooks_with_tls(render: Any) -> None:
    r = render(values=ALL_FEATURES)
    ing = r.one("Ingress", FULLNAME)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"secretName": "hooks-tls", "hosts": ["hooks.example.com"]}]
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/webhooks" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}


def test_service_monitor_scrapes_metrics(render: Any) -> None:
    sm = render(values=ALL_FEATURES).one("ServiceMonitor", FULLNAME)
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "http" and ep["path"] == "/metrics"


def test_network_policy_limits_ingress_and_egress(render: Any) -> None:
    r = render(values=ALL_FEATURES)
    np = r.one("NetworkPolicy", FULLNAME)
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ing,) = np["spec"]["ingress"]
    assert ing["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress = np["spec"]["egress"]
    ports = [{p["port"] for p in e["ports"]} for e in egress]
    assert ports == [{53}, {443, 6443}, {443}]
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "127.0.0.1/32"}}]
    assert egress[2]["to"] == [{"ipBlock": {"cidr": "127.0.0.2/32"}}]
    cache_np = r.one("NetworkPolicy", f"{FULLNAME}-cache")
    assert cache_np["spec"]["egress"] == []


def test_cache_server_is_wired_into_gitea_runners(render: Any, tmp_path: Path) -> None:
    r = render(values=ALL_FEATURES)
    dep = r.one("Deployment", f"{FULLNAME}-cache")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "docker.io/gitea/act_runner:0.3.0"
    script = c["args"][0]
    assert "external_secret" in script and "cache-server" in script
    assert r.one("Service", f"{FULLNAME}-cache")["spec"]["ports"][0]["port"] == 8088
    assert r.one("PersistentVolumeClaim", f"{FULLNAME}-cache")
    assert "cache-server.secret" in r.one("Secret", FULLNAME)["data"]
    forge = r.config()["forges"][0]
    # The option names the Gitea-family forge adapter reads (scaler/forges/gitea.py).
    assert forge["options"] == {
        "cache_server": f"http://{FULLNAME}-cache.{NAMESPACE}.svc:8088/",
        "cache_secret_file": f"{SECRETS_DIR}/cache-server.secret",
    }
    # And the Gitea adapter turns them into the runner's act_runner config.
    import asyncio

    from scaler.forges.gitea import GiteaForge

    local = parse_config(_with_local_secrets(r.config(), tmp_path))
    adapter = GiteaForge(local.forge("gitea"))
    try:
        assert adapter._cache() == (f"http://{FULLNAME}-cache.{NAMESPACE}.svc:8088/", "stand-in-secret-value")
    finally:
        asyncio.run(adapter.aclose())
    _check_offline(r.config(), tmp_path)


def test_cache_server_needs_a_pinned_image(render_error: Any) -> None:
    assert "cacheServer.image.tag" in render_error(values={"cacheServer": {"enabled": True}})


def test_grafana_dashboard_configmap(render: Any) -> None:
    r = render(values=ALL_FEATURES)
    cm = r.one("ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "runner-scaler.json").read_text())
    assert json.loads(cm["data"]["runner-scaler.json"]) == shipped


# --- schema --------------------------------------------------------------------------------------

REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("zero replicas", {"replicaCount": 0}, "/replicaCount"),
    ("replicas as text", {"replicaCount": "two"}, "/replicaCount"),
    ("pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("unknown top-level value", {"replicas": 2}, "replicas"),
    ("root container", {"securityContext": {"runAsNonRoot": False}}, "/securityContext/runAsNonRoot"),
    (
        "writable root fs",
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "/securityContext/readOnlyRootFilesystem",
    ),
    (
        "privilege escalation",
        {"securityContext": {"allowPrivilegeEscalation": True}},
        "/securityContext/allowPrivilegeEscalation",
    ),
    (
        "unconfined seccomp",
        {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        "/securityContext/seccompProfile/type",
    ),
    (
        "added capability",
        {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        "/securityContext/capabilities/add",
    ),
    ("no resources", {"resources": None}, "resources"),
    ("service type", {"service": {"type": "ExternalName"}}, "/service/type"),
    ("service port", {"service": {"port": 70000}}, "/service/port"),
    ("cluster-wide as text", {"rbac": {"clusterWide": "yes"}}, "/rbac/clusterWide"),
    ("bad runner namespace", {"runnerNamespace": "CI_Runners"}, "/runnerNamespace"),
    ("ingress tls without secret", {"ingress": {"tls": [{"hosts": ["a"]}]}}, "/ingress/tls/0"),
    ("bad cidr", {"networkPolicy": {"forge": {"cidrs": ["example.com"]}}}, "/networkPolicy/forge/cidrs/0"),
    ("unknown secret field", {"secret": {"forges": {"gitea": {"password": "x"}}}}, "/secret/forges/gitea"),
    ("empty forges", {"config": {"forges": []}}, "/config/forges"),
    ("unknown config key", {"config": {"pool": []}}, "/config"),
    ("bad duration", {"config": {"timing": {"resync_interval": "soon"}}}, "/config/timing/resync_interval"),
    ("bad log level", {"config": {"logging": {"level": "verbose"}}}, "/config/logging/level"),
]

_FORGE = {
    "name": "gitea",
    "type": "gitea",
    "url": "https://gitea.example.com",
    "scope": {"kind": "organization", "name": "x"},
}
REJECTED_FORGES: list[tuple[str, dict[str, Any], str]] = [
    ("inline token", {**_FORGE, "token": "ghp_abc"}, "token"),
    ("inline webhook secret", {**_FORGE, "webhook_secret": "abc"}, "webhook_secret"),
    ("unknown forge type", {**_FORGE, "type": "gitlab"}, "/config/forges/0/type"),
    ("forge url", {**_FORGE, "url": "gitea.example.com"}, "/config/forges/0/url"),
    ("forge name", {**_FORGE, "name": "My_Forge"}, "/config/forges/0/name"),
    ("scope kind", {**_FORGE, "scope": {"kind": "team", "name": "x"}}, "/config/forges/0/scope/kind"),
    ("missing url", {k: v for k, v in _FORGE.items() if k != "url"}, "url"),
]


@pytest.mark.parametrize(("values", "where"), [(v, w) for _, v, w in REJECTED], ids=[n for n, _, _ in REJECTED])
def test_schema_rejects(render_error: Any, values: dict[str, Any], where: str) -> None:
    err = render_error(values=values)
    assert "schema" in err, err
    assert where in err, err


@pytest.mark.parametrize(
    ("forge", "where"), [(f, w) for _, f, w in REJECTED_FORGES], ids=[n for n, _, _ in REJECTED_FORGES]
)
def test_schema_rejects_forge(render_error: Any, forge: dict[str, Any], where: str) -> None:
    err = render_error(values={"config": {"forges": [forge]}})
    assert "schema" in err, err
    assert where in err, err


def test_schema_rejects_a_bad_pool(render_error: Any) -> None:
    pool = {"name": "p", "forge": "gitea", "provider": "kubernetes", "labels": [], "min_idle": -1}
    err = render_error(values={"config": {"pools": [pool]}})
    assert "/config/pools/0/labels" in err and "/config/pools/0/min_idle" in err


def test_schema_config_mirrors_the_scaler_config_model() -> None:
    """values.schema.json's config part must follow scaler.config: every key the
    scaler accepts is allowed, and nothing else (pydantic forbids extras too)."""
    from scaler import config as c

    schema = json.loads((CHART / "values.schema.json").read_text())
    cfg = schema["properties"]["config"]
    forge = cfg["properties"]["forges"]["items"]
    pairs = [
        (c.Config, cfg),
        (c.ForgeConfig, forge),
        (c.Scope, forge["properties"]["scope"]),
        (c.GitHubApp, forge["properties"]["github_app"]),
        (c.ProviderConfig, cfg["properties"]["providers"]["items"]),
        (c.PoolConfig, cfg["properties"]["pools"]["items"]),
        (c.WarmConfig, cfg["properties"]["pools"]["items"]["properties"]["warm"]),
        (c.Limits, cfg["properties"]["limits"]),
        (c.Timing, cfg["properties"]["timing"]),
        (c.ServerConfig, cfg["properties"]["server"]),
        (c.LoggingConfig, cfg["properties"]["logging"]),
        (c.LeaderElection, cfg["properties"]["leader_election"]),
    ]
    for model, node in pairs:
        assert node["additionalProperties"] is False, model.__name__
        assert set(node["properties"]) == set(model.model_fields), model.__name__
        required = {n for n, f in model.model_fields.items() if f.is_required()}
        if model is c.GitHubApp:
            required.discard("private_key_file")  # the chart fills it in (secret.forges.NAME.githubAppPrivateKey)
        assert set(node.get("required", [])) == required, model.__name__
        for name, f in model.model_fields.items():
            _field_matches(model.__name__, name, f, node["properties"][name])


def _field_matches(model: str, name: str, field: Any, node: dict[str, Any]) -> None:
    """A field's choices are the model's (Literal -> enum); its bounds at least as strict (ge/le)."""
    import typing

    import annotated_types

    where = f"{model}.{name}"
    if typing.get_origin(field.annotation) is typing.Literal:
        assert set(node.get("enum", [])) == set(typing.get_args(field.annotation)), where
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge) and "minimum" in node:
            assert node["minimum"] >= meta.ge, where
        if isinstance(meta, annotated_types.Le) and "maximum" in node:
            assert node["maximum"] <= meta.le, where
    if field.annotation is bool:
        assert node.get("type") == "boolean", where
    if field.annotation is int:
        assert node.get("type") == "integer", where


# --- what an operator applies --------------------------------------------------------------------


def test_gitea_example_applies_as_is_with_kubectl(render: Any, kubectl_bin: str, tmp_path: Path) -> None:
    """kubectl (no cluster here) decodes every object of the rendered example;
    the strict field check above covers the API schema."""
    r = render(GITEA_EXAMPLE)
    manifest = tmp_path / "gitea.yaml"
    manifest.write_text(r.text, encoding="utf-8")
    env = {"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [kubectl_bin, "annotate", "--local", "-f", str(manifest), "example.com/checked=true", "-o", "yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = [d for d in yaml.safe_load_all(proc.stdout) if d]
    items = out[0]["items"] if len(out) == 1 and out[0].get("kind") == "List" else out
    assert sorted((d["kind"], d["metadata"]["name"]) for d in items) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in r.docs
    )
    # Typed decoding of the workload (kubectl set works on pod templates only).
    dep_only = tmp_path / "deployment.yaml"
    dep_only.write_text(yaml.safe_dump(r.one("Deployment", FULLNAME)), encoding="utf-8")
    proc = subprocess.run(
        [kubectl_bin, "set", "env", "--local", "-f", str(dep_only), "CHECK=1", "-o", "yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # Everything it refers to exists in the output or is a documented prerequisite.
    kinds = {(d["kind"], d["metadata"]["name"]) for d in r.docs}
    spec = r.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert ("ServiceAccount", spec["serviceAccountName"]) in kinds
    for v in spec["volumes"]:
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in kinds
        if "secret" in v:
            assert v["secret"]["secretName"] == "runner-scaler-gitea"
            assert "kubectl -n runner-scaler create secret generic runner-scaler-gitea" in GITEA_EXAMPLE.read_text()


def test_notes_tell_the_webhook_url_secret_and_check(helm: Any) -> None:
    proc = helm(
        "install",
        "runner-scaler",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "-f",
        str(GITEA_EXAMPLE),
        check=True,
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "https://runner-scaler.example.com/webhooks/gitea" in notes
    assert "get secret runner-scaler-gitea" in notes and "gitea\\.webhook-secret" in notes
    assert "runner-scaler webhook install" in notes and "--forge gitea" in notes
    assert "runner-scaler check --config /etc/runner-scaler/config.yaml" in notes
    assert "ci-runners" in notes


def test_notes_tell_the_in_cluster_url(helm: Any) -> None:
    """With the credentials given, NOTES name the in-cluster webhook URL and the API reads."""
    proc = helm(
        "install",
        "rs",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--set-string",
        "secret.forges.gitea.token=abc",
        "--set-string",
        "secret.forges.gitea.webhookSecret=def",
        check=True,
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "http://rs-runner-scaler.runner-scaler.svc:8080/webhooks/gitea" in notes
    assert "/api/v1/forges" in notes and "WARNING" not in notes
