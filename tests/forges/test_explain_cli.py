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
    out = explain(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("queued")))
    assert out["forge"] == "gitea" and out["state"] == "queued" and out["job_id"] == 42 and out["run_id"] == 7
    assert out["pool"] is None and "parsed only" in out["reason"] and "not verified" in out["signature"]


def test_explain_pool_and_reasons(tmp_path: Path) -> None:
    cfg = load_config(config_file(tmp_path))
    out = explain(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("queued")), cfg)
    assert out["pool"] == "small" and "small" in out["reason"]
    out = explain(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("queued", labels=["windows"])), cfg)
    assert out["pool"] is None and out["reason"].startswith("no label match")
    out = explain(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("queued", labels=["gpu"])), cfg)
    assert out["pool"] is None and out["reason"].startswith("repository not allowed")
    out = explain(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("waiting")), cfg)
    assert out["state"] is None and out["reason"].startswith("event ignored") and out["job_id"] == 42
    out = explain(delivery({"X-Forgejo-Event": "workflow_job_waiting"}, forgejo_body("waiting")), cfg)
    assert out["forge"] == "forgejo" and out["reason"] == "no forge of type forgejo in the config"
    out = explain(delivery({"X-GitHub-Event": "workflow_job"}, github_body("completed", "success")))
    assert out["forge"] == "github" and out["state"] == "completed"


def test_cmd_explain_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_explain_subcommand(sub)
    add_webhook_subcommands(sub)
    good = tmp_path / "d.json"
    good.write_text(json.dumps(delivery({"X-Gitea-Event": "workflow_job"}, gitea_body("queued"))))
    args = parser.parse_args(["explain", "--delivery", str(good), "--config", str(config_file(tmp_path))])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["pool"] == "small"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"headers": {"X-Gitea-Event": "workflow_job"}, "body": {"action": "queued"}}))
    assert cmd_explain(argparse.Namespace(delivery=str(bad), config=None)) == 2
    assert "malformed" in capsys.readouterr().out


def test_cmd_webhook_install_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeForgeServer("gitea", "1.25.0") as srv:
        cfg = config_file(tmp_path, "gitea", srv.url)
        ns = argparse.Namespace(config=str(cfg), forge="main", url="http://127.0.0.1:8080/webhooks/main",
                                webhook_cmd="install")
        assert cmd_webhook(ns) == 0
        assert json.loads(capsys.readouterr().out)["action"] == "created"
        assert cmd_webhook(ns) == 0
        assert json.loads(capsys.readouterr().out)["action"] == "unchanged"
        hook = next(iter(srv.hooks.values()))
        assert hook.secret == "secret-value-1" and hook.content_type == "json" and hook.events == ["workflow_job"]
        ns.webhook_cmd = "list"
        assert cmd_webhook(ns) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed[0]["reaches_scaler"] is True
        hook.events = ["push"]
        ns.webhook_cmd = "install"
        assert cmd_webhook(ns) == 0
        assert json.loads(capsys.readouterr().out)["action"] == "updated"
        assert hook.events == ["workflow_job"] and len(srv.hooks) == 1
