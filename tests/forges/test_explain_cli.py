"""``runner-scaler explain`` and ``webhook install|list`` helpers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.config import load_config
from scaler.errors import MalformedDelivery
from scaler.explain import add_explain_subcommand, cmd_explain, detect_forge, explain
from scaler.forges.webhooks_admin import add_webhook_subcommands, cmd_webhook
from scaler.testing.fake_forge_server import FakeForgeServer
from tests.forges.conftest import write
from tests.forges.test_parse import forgejo_body, gitea_body, github_body


def config_file(tmp: Path, kind: str = "gitea", url: str = "http://127.0.0.1:9") -> Path:
    data = {
        "forges": [{"name": "main", "type": kind, "url": url, "scope": {"kind": "organization", "name": "acme"},
                    "token_file": str(write(tmp, "tok", "fake-admin-token-0123456789")),
                    "webhook_secret_files": [str(write(tmp, "sec", "secret-value-1"))]}],
        "providers": [{"name": "mem", "type": "memory"}],
        "pools": [
            {"name": "small", "forge": "main", "provider": "mem", "labels": ["ubuntu-latest:docker://node:20"],
             "repositories": ["acme/*"]},
            {"name": "gpu", "forge": "main", "provider": "mem", "labels": ["gpu:host"], "repositories": ["acme/ml"],
             "priority": 5},
        ],
    }
    p = tmp / "config.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def delivery(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return {"headers": headers, "body": json.loads(body)}


def test_detect_forge() -> None:
    assert detect_forge({"x-forgejo-event": "x", "x-gitea-event": "x"}) == "forgejo"
    assert detect_forge({"x-gitea-event": "x", "x-github-event": "x"}) == "gitea"
    assert detect_forge({"x-github-event": "x"}) == "github"
    with pytest.raises(MalformedDelivery):
        detect_forge({})


def test_explain_without_config() -> None:
    out = explain(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("1.25.0", "queued")))
    assert out["forge"] == "gitea" and out["state"] == "queued" and out["job_id"] == 42 and out["run_id"] == 7
    assert out["pool"] is None and "parsed only" in out["reason"] and "not checked" in out["signature"]


@pytest.mark.parametrize(("headers", "body", "kind"), [
    ({"X-Gitea-Event": "workflow_job"}, gitea_body("1.24.0", "queued"), "gitea"),
    ({"X-Forgejo-Event": "workflow_job_waiting", "X-Gitea-Event": "workflow_job_waiting"},
     forgejo_body("waiting"), "forgejo"),
    ({"X-GitHub-Event": "workflow_job"}, github_body("queued"), "github"),
])
def test_explain_every_forge_without_config(headers: dict[str, str], body: bytes, kind: str) -> None:
    out = explain(delivery(headers, body))
    assert out["forge_type"] == kind and out["state"] == "queued" and out["repository"] == "acme/app"


def test_forge_type_overrides_the_headers() -> None:
    d = delivery({"X-GitHub-Event": "workflow_job_waiting", "X-Forgejo-Event": "workflow_job_waiting"},
                 forgejo_body("waiting"))
    assert explain(d, forge_type="forgejo")["state"] == "queued"
    with pytest.raises(MalformedDelivery):
        explain(delivery({}, gitea_body("1.25.0", "queued")))


def test_explain_pool_and_reasons(tmp_path: Path) -> None:
    cfg = load_config(config_file(tmp_path))
    h = {"X-Gitea-Event": "workflow_job"}
    out = explain(delivery(h, gitea_body("1.25.0", "queued")), cfg)
    assert out["pool"] == "small" and "small" in out["reason"] and out["serve"] == "202 accepted"
    out = explain(delivery(h, gitea_body("1.25.0", "queued", labels=["windows"])), cfg)
    assert out["pool"] is None and out["reason"].startswith("no label match") and "not_served" in out["serve"]
    out = explain(delivery(h, gitea_body("1.25.0", "queued", labels=["gpu"])), cfg)
    assert out["pool"] is None and out["reason"].startswith("repository not allowed")
    out = explain(delivery(h, gitea_body("1.25.0", "waiting")), cfg)
    assert out["state"] is None and out["reason"].startswith("event ignored") and out["job_id"] == 42
    # one forge in the config: it reads every delivery posted to it, as serve does (a Gitea
    # forge refuses a delivery without X-Gitea-Event with 400)
    with pytest.raises(MalformedDelivery, match="X-Gitea-Event"):
        explain(delivery({"X-Forgejo-Event": "workflow_job_waiting"}, forgejo_body("waiting")), cfg)


def test_explain_with_the_local_example_config_matches_serve() -> None:
    """examples/local (the fake forge type) reads GitHub-shaped deliveries, and
    explain gives the pool serve would: the highest-priority candidate."""
    from scaler.planner import PoolIndex

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "local" / "config.yaml")
    d = delivery({"X-GitHub-Event": "workflow_job"}, github_body("queued", **{
        "repository.full_name": "example/app", "workflow_job.labels": ["self-hosted", "ubuntu-latest"]}))
    out = explain(d, cfg)
    assert out["forge"] == "local" and out["serve"] == "202 accepted"
    job = explain_job(d, cfg)
    assert out["pool"] == PoolIndex(cfg).candidates(job)[0].name == "small"


def explain_job(d: dict[str, Any], cfg: Any) -> Any:
    from scaler.explain import parser_for

    forge = cfg.forges[0]
    body = json.dumps(d["body"]).encode()
    return parser_for(forge.type, forge)(forge.name, {k.lower(): v for k, v in d["headers"].items()}, body).job


def test_several_forges_need_the_name(tmp_path: Path) -> None:
    data = yaml.safe_load(config_file(tmp_path).read_text())
    second = dict(data["forges"][0], name="other")
    data["forges"].append(second)
    p = tmp_path / "two.yaml"
    p.write_text(yaml.safe_dump(data))
    cfg = load_config(p)
    d = delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("1.25.0", "queued"))
    with pytest.raises(MalformedDelivery, match="--forge"):
        explain(d, cfg)
    assert explain(d, cfg, forge_name="other")["forge"] == "other"
    with pytest.raises(MalformedDelivery, match="no forge named"):
        explain(d, cfg, forge_name="nope")


def test_signature_checked_for_a_raw_body(tmp_path: Path) -> None:
    from scaler.forges._signature import sign

    cfg = load_config(config_file(tmp_path))
    body = gitea_body("1.25.0", "queued")
    good = {"headers": {"X-Gitea-Event": "workflow_job", "X-Gitea-Signature": sign("secret-value-1", body)},
            "body": body.decode()}
    assert explain(good, cfg)["signature"] == "valid"
    bad = {**good, "headers": {**good["headers"], "X-Gitea-Signature": sign("other", body)}}
    assert explain(bad, cfg)["signature"].startswith("invalid")


def test_cmd_explain_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_explain_subcommand(sub)
    add_webhook_subcommands(sub)
    good = tmp_path / "d.json"
    good.write_text(json.dumps(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("1.25.0", "queued"))))
    args = parser.parse_args(["explain", "--delivery", str(good), "--config", str(config_file(tmp_path))])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["pool"] == "small"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"headers": {"X-Gitea-Event": "workflow_job"}, "body": {"action": "queued"}}))
    assert cmd_explain(argparse.Namespace(delivery=str(bad), config=None)) == 2
    assert "malformed" in capsys.readouterr().out
    args = parser.parse_args(["explain", "--delivery", str(good), "--forge-type", "gitea"])
    assert args.func(args) == 0


def test_cmd_webhook_install_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeForgeServer("gitea", "1.25.0") as srv:
        cfg = config_file(tmp_path, "gitea", srv.url)
        ns = argparse.Namespace(config=str(cfg), forge="main", url="http://127.0.0.1:8080/webhooks/main",
                                webhook_cmd="install")
        assert cmd_webhook(ns) == 0
        created = json.loads(capsys.readouterr().out)
        assert created["action"] == "created" and created["url_from"] == "--url"
        assert cmd_webhook(ns) == 0
        assert json.loads(capsys.readouterr().out)["action"] == "unchanged"
        hook = next(iter(srv.hooks.values()))
        assert hook.secret == "secret-value-1" and hook.content_type == "json" and hook.events == ["workflow_job"]
        ns.webhook_cmd = "list"
        assert cmd_webhook(ns) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["compared_with"] == ns.url and listed["url_from"] == "--url"
        assert listed["hooks"][0]["reaches_scaler"] is True
        hook.events = ["push"]
        ns.webhook_cmd = "install"
        assert cmd_webhook(ns) == 0
        assert json.loads(capsys.readouterr().out)["action"] == "updated"
        assert hook.events == ["workflow_job"] and len(srv.hooks) == 1


@pytest.mark.parametrize("variant", ["queued", "windows", "gpu-elsewhere", "blocked", "bad-id"])
def test_explain_says_what_serve_answers(tmp_path: Path, variant: str) -> None:
    """The same signed delivery, posted to the real webhook route and given to
    explain with the same config: explain names serve's status code."""
    from starlette.testclient import TestClient

    from scaler.app import Scaler
    from scaler.forges import build_forge
    from scaler.forges._signature import sign
    from scaler.provider import ProviderSettings
    from scaler.testing.memory import MemoryProvider
    from scaler.web import create_app

    cfg = load_config(config_file(tmp_path))
    kw: dict[str, Any] = {"windows": {"labels": ["windows"]}, "gpu-elsewhere": {"labels": ["gpu"]},
                          "bad-id": {"id": -5}}.get(variant, {})
    body = gitea_body("1.25.0", "waiting" if variant == "blocked" else "queued", **kw)
    headers = {"X-Gitea-Event": "workflow_job", "X-Gitea-Delivery": f"d-{variant}",
               "X-Gitea-Signature": sign("secret-value-1", body), "Content-Type": "application/json"}
    scaler = Scaler(cfg, forges={"main": build_forge(cfg.forges[0])},
                    providers={"mem": MemoryProvider(ProviderSettings("mem", "memory", cfg.controller_id, {}))})
    status = TestClient(create_app(scaler)).post("/webhooks/main", content=body, headers=headers).status_code
    try:
        out = explain({"headers": headers, "body": body.decode()}, cfg)
    except MalformedDelivery:
        assert status == 400
        return
    assert out["signature"] == "valid"
    assert int(out["serve"].split()[0]) == status


def test_webhook_list_uses_the_public_url_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeForgeServer("gitea", "1.25.0") as srv:
        cfg = config_file(tmp_path, "gitea", srv.url)
        data = yaml.safe_load(cfg.read_text())
        ns = argparse.Namespace(config=str(cfg), forge="main", url=None, webhook_cmd="list")
        assert cmd_webhook(ns) == 0
        unknown = json.loads(capsys.readouterr().out)
        assert unknown["compared_with"] is None and "server.public_url" in unknown["url_from"]
        ns.webhook_cmd = "install"
        assert cmd_webhook(ns) == 1  # no URL to install
        assert "server.public_url" in capsys.readouterr().err
        data["server"] = {"public_url": "http://127.0.0.1:8443/scaler/"}
        cfg.write_text(yaml.safe_dump(data))
        assert cmd_webhook(ns) == 0
        assert json.loads(capsys.readouterr().out)["url_from"] == "server.public_url"
        ns.webhook_cmd = "list"
        assert cmd_webhook(ns) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["compared_with"] == "http://127.0.0.1:8443/scaler/webhooks/main"
        assert listed["url_from"] == "server.public_url" and listed["hooks"][0]["reaches_scaler"] is True
        ns.url = "http://127.0.0.1:1/webhooks/main"
        assert cmd_webhook(ns) == 0
        other = json.loads(capsys.readouterr().out)
        assert other["url_from"] == "--url" and other["hooks"][0]["reaches_scaler"] is False
