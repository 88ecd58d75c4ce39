"""The chart's ``ui:`` block: /ui through the Service and Ingress with auth
from the chart's Secret, rendered by the real helm and accepted by the scaler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHART, TEST_UI_SECRET, missing_secret_sets
from .test_chart import ALL_FEATURES, FULLNAME, SECRETS_DIR, _check_offline

pytestmark = pytest.mark.helm

UI = {"ui": {"enabled": True}, "ingress": {"enabled": True, "hosts": [{"host": "scaler.example.com"}]}}


def _paths(r: Any) -> list[str]:
    return [p["path"] for rule in r.one("Ingress", FULLNAME)["spec"]["rules"] for p in rule["http"]["paths"]]


def _secret(r: Any, key: str) -> str | None:
    data = r.one("Secret", FULLNAME)["data"]
    return base64.b64decode(data[key]).decode() if key in data else None


def _accepted(config: dict[str, Any], tmp_path: Path) -> None:
    """`check --offline` accepts the config, with the UI's secret file stood in locally."""
    out = json.loads(json.dumps(config))
    auth = out["ui"]["auth"]
    key = "password_file" if auth["type"] == "basic" else "token_file"
    assert auth[key] == f"{SECRETS_DIR}/ui.secret"
    local = tmp_path / "ui.secret"
    local.write_text("stand-in-ui-secret\n", encoding="utf-8")
    local.chmod(0o600)
    auth[key] = str(local)
    _check_offline(out, tmp_path)


def test_ui_left_off_serves_loopback_only(render: Any) -> None:
    """By default the config has no ui: section (loopback clients only), no ui.secret, no /ui on the Ingress."""
    r = render(values={"ingress": UI["ingress"]})
    assert "ui" not in r.config()
    assert _secret(r, "ui.secret") is None
    assert _paths(r) == ["/webhooks"]


def test_ui_enabled_with_basic_auth_through_service_and_ingress(render: Any, tmp_path: Path) -> None:
    """ui.enabled serves /ui to every client with the given password; the Ingress routes /ui to the Service."""
    r = render(values=UI)
    cfg = r.config()
    assert cfg["ui"] == {
        "enabled": True,
        "auth": {"type": "basic", "username": "operator", "password_file": f"{SECRETS_DIR}/ui.secret"},
    }
    password = _secret(r, "ui.secret")
    assert password == TEST_UI_SECRET
    assert _paths(r) == ["/webhooks", "/ui"]
    (ui_path,) = [p for p in r.one("Ingress", FULLNAME)["spec"]["rules"][0]["http"]["paths"] if p["path"] == "/ui"]
    assert ui_path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    assert r.one("Service", FULLNAME)["spec"]["ports"][0]["name"] == "http"
    _accepted(cfg, tmp_path)


def test_ui_bearer_token_from_values(render: Any, tmp_path: Path) -> None:
    """A bearer token given in values lands in the Secret and the config reads it as token_file."""
    r = render(values={"ui": {"enabled": True, "auth": {"type": "bearer", "secret": "tok-from-values-123"}}})
    assert r.config()["ui"]["auth"] == {"type": "bearer", "token_file": f"{SECRETS_DIR}/ui.secret"}
    assert _secret(r, "ui.secret") == "tok-from-values-123"
    _accepted(r.config(), tmp_path)


def test_ui_without_ingress_path(render: Any) -> None:
    """ui.ingress false keeps /ui off the Ingress (Service only)."""
    r = render(values={**UI, "ui": {"enabled": True, "ingress": False}})
    assert _paths(r) == ["/webhooks"]


def test_operator_ui_auth_is_kept(render: Any) -> None:
    """An auth written in config.ui by the operator is left alone, and no ui.secret is generated for it."""
    own = {"type": "bearer", "token_file": "/run/elsewhere/token"}
    r = render(values={"ui": {"enabled": True}, "config": {"ui": {"auth": own, "refresh": "2s"}}})
    assert r.config()["ui"] == {"enabled": True, "auth": own, "refresh": "2s"}
    assert _secret(r, "ui.secret") is None


def test_ui_password_is_never_generated(render_error: Any) -> None:
    """ui.enabled without ui.auth.secret fails the render, like every credential the chart would otherwise invent."""
    err = render_error(values={"ui": {"enabled": True}}, secrets=False, sets=missing_secret_sets())
    assert "ui.auth.secret: required" in err


def test_ui_needs_the_secret(render_error: Any) -> None:
    """ui.enabled without any Secret to hold the credentials is refused, saying why."""
    forge = {
        "name": "gitea",
        "type": "gitea",
        "url": "https://gitea.example.com",
        "scope": {"kind": "organization", "name": "x"},
        "token_env": "T",
        "webhook_secret_envs": ["W"],
    }
    err = render_error(values={"ui": {"enabled": True}, "secret": {"create": False}, "config": {"forges": [forge]}})
    assert "ui.enabled needs the Secret" in err


@pytest.mark.parametrize(
    "ui", [{"auth": {"type": "digest"}}, {"auth": {"type": "basic", "username": "a:b"}}, {"colour": "blue"}]
)
def test_ui_values_schema(render_error: Any, ui: dict[str, Any]) -> None:
    """The schema refuses an unknown auth type, a username with a colon and unknown keys."""
    assert "ui" in render_error(values={"ui": ui})


def test_ui_with_every_feature_lints_strict(helm: Any, values_file: Any) -> None:
    """The chart with every optional part and the UI on passes `helm lint --strict`."""
    values = {**ALL_FEATURES, **UI, "ingress": {**ALL_FEATURES["ingress"], "enabled": True}}
    proc = helm("lint", "--strict", str(CHART), "-f", str(values_file(values)))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_config_ui_mirrors_the_scaler_model() -> None:
    """values.schema.json's config.ui follows scaler.config.UIConfig and UIAuth, key for key."""
    from scaler.config import UIAuth, UIConfig

    schema = json.loads((CHART / "values.schema.json").read_text())
    ui = schema["properties"]["config"]["properties"]["ui"]
    for model, node in ((UIConfig, ui), (UIAuth, ui["properties"]["auth"])):
        assert node["additionalProperties"] is False, model.__name__
        assert set(node["properties"]) == set(model.model_fields), model.__name__
        assert set(node.get("required", [])) == {n for n, f in model.model_fields.items() if f.is_required()}
