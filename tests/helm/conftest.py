"""Fixtures for the chart tests: the real ``helm`` (and ``kubectl``) binaries.

``.ci/run`` fetches them (``.ci/services/helm.sh``) and exports
``RUNNER_SCALER_TEST_HELM`` / ``RUNNER_SCALER_TEST_KUBECTL``. Without them the
tests fail loudly: a chart test that silently skips proves nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "runner-scaler"
EXAMPLES = REPO / "examples"
NAMESPACE = "runner-scaler"
RELEASE = "rs"


def _binary(var: str, what: str) -> str:
    path = os.environ.get(var)
    if not path:
        pytest.fail(
            f"{var} is not set: the {what} tests need the real {what} binary. Run them through .ci/run, or "
            f"`source .ci/services/helm.sh; helm_install; helm_start` first.",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{var}={path} is not an executable file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """helm's own state (cache, config, plugins) kept out of $HOME, and no cluster."""
    base = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(base / "cache"),
        HELM_CONFIG_HOME=str(base / "config"),
        HELM_DATA_HOME=str(base / "data"),
        KUBECONFIG=str(base / "no-kubeconfig"),
    )
    return env


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return _binary("RUNNER_SCALER_TEST_HELM", "helm")


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    return _binary("RUNNER_SCALER_TEST_KUBECTL", "kubectl")


@dataclass
class Rendered:
    """``helm template`` output, parsed."""

    text: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        return found[0]

    def config(self) -> dict[str, Any]:
        cm = self.one("ConfigMap", f"{RELEASE}-runner-scaler")
        data = yaml.safe_load(cm["data"]["config.yaml"])
        assert isinstance(data, dict)
        return data


def _set_args(sets: Mapping[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (sets or {}).items():
        if isinstance(value, bool):
            args += ["--set", f"{key}={'true' if value else 'false'}"]
        elif isinstance(value, int | float):
            args += ["--set", f"{key}={value}"]
        else:
            args += ["--set-string", f"{key}={value}"]
    return args


HelmRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def helm(helm_bin: str, helm_env: dict[str, str]) -> HelmRun:
    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([helm_bin, *args], capture_output=True, text=True, env=helm_env, timeout=120, check=False)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
        return proc

    return run


@pytest.fixture(scope="session")
def values_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Mapping[str, Any]], Path]:
    base = tmp_path_factory.mktemp("values")
    count = iter(range(10_000))

    def write(values: Mapping[str, Any]) -> Path:
        path = base / f"values-{next(count)}.yaml"
        path.write_text(yaml.safe_dump(dict(values), sort_keys=False), encoding="utf-8")
        return path

    return write


RenderFn = Callable[..., Rendered]

# Stand-in credentials for renders whose values give none: the chart refuses
# to render without them (it never generates one).
TEST_UI_SECRET = "test-ui-secret"
TEST_SECRETS = {"token": "test-forge-token", "webhookSecret": "test-webhook-secret", "githubAppPrivateKey": "test-pem"}


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _effective_values(files: Iterable[Path | str], values: Mapping[str, Any] | None, sets: Mapping[str, Any] | None):  # type: ignore[no-untyped-def]
    merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        merged = _merge(merged, yaml.safe_load(Path(f).read_text()) or {})
    merged = _merge(merged, dict(values or {}))
    for key, value in (sets or {}).items():
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return merged


def missing_secret_sets(
    files: Iterable[Path | str] = (), values: Mapping[str, Any] | None = None, sets: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``--set`` values for every credential the chart would require and the values do not give."""
    v = _effective_values(files, values, sets)
    secret = v.get("secret") or {}
    if secret.get("existingSecret") or not secret.get("create", True):
        return {}
    given = secret.get("forges") or {}
    out: dict[str, str] = {}
    for f in (v.get("config") or {}).get("forges") or []:
        have = given.get(f["name"]) or {}
        needs = []
        if not ({"token_file", "token_env", "github_app"} & f.keys()) and f.get("type") != "fake":
            needs.append("token")
        if not ({"webhook_secret_files", "webhook_secret_envs"} & f.keys()):
            needs.append("webhookSecret")
        if isinstance(f.get("github_app"), dict) and "private_key_file" not in f["github_app"]:
            needs.append("githubAppPrivateKey")
        for key in needs:
            if not have.get(key):
                out[f"secret.forges.{f['name']}.{key}"] = TEST_SECRETS[key]
    if (v.get("cacheServer") or {}).get("enabled") and not secret.get("cacheServerSecret"):
        out["secret.cacheServerSecret"] = "test-cache-secret"
    ui = v.get("ui") or {}
    own_auth = "auth" in ((v.get("config") or {}).get("ui") or {})
    if ui.get("enabled") and not own_auth and not (ui.get("auth") or {}).get("secret"):
        out["ui.auth.secret"] = TEST_UI_SECRET
    return out


@pytest.fixture(scope="session")
def render(helm: HelmRun, values_file: Callable[[Mapping[str, Any]], Path]) -> RenderFn:
    """Render the chart; fail the test (with helm's message) if it does not render."""

    def _render(
        *files: Path | str,
        values: Mapping[str, Any] | None = None,
        sets: Mapping[str, Any] | None = None,
        extra: Iterable[str] = (),
        secrets: bool = True,
    ) -> Rendered:
        """``secrets``: fill in stand-ins for credentials the values leave out."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for f in files:
            args += ["-f", str(f)]
        if values:
            args += ["-f", str(values_file(values))]
        args += _set_args(sets)
        if secrets:
            args += _set_args(missing_secret_sets(files, values, sets))
        args += list(extra)
        proc = helm(*args, check=True)
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return Rendered(proc.stdout, docs)

    return _render


@pytest.fixture(scope="session")
def render_error(helm: HelmRun, values_file: Callable[[Mapping[str, Any]], Path]) -> Callable[..., str]:
    """Render the chart expecting failure; return helm's error output."""

    def _fail(
        values: Mapping[str, Any] | None = None, sets: Mapping[str, Any] | None = None, *, secrets: bool = True
    ) -> str:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        if values:
            args += ["-f", str(values_file(values))]
        args += _set_args(sets)
        if secrets:
            args += _set_args(missing_secret_sets((), values, sets))
        proc = helm(*args)
        assert proc.returncode != 0, f"helm template accepted values it must reject: {values or sets}"
        return proc.stderr

    return _fail


def example_values_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*/values.yaml"))
