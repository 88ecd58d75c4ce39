"""The alert rules, with the real ``promtool`` and ``prometheus`` (Debian's
package, installed by .ci/services/prometheus.sh): the rule file checks, its
unit tests pass, and a real Prometheus scraping a real ``serve`` on loopback
evaluates them against what the scaler exports (and answers the KEDA query)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scaler.testing import FakeForgeState
from tests.conftest import SECRET, base_config

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "runner-scaler" / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts.test.yaml")


def _binary(var: str) -> str:
    path = os.environ.get(var)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            f"{var} is not set to an executable: the alert tests need Debian's prometheus package. Run them through "
            ".ci/run, or `source .ci/services/prometheus.sh; prometheus_install; prometheus_start` first.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return _binary("RUNNER_SCALER_TEST_PROMTOOL")


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return _binary("RUNNER_SCALER_TEST_PROMETHEUS")


def test_rule_file_checks(promtool: str) -> None:
    """promtool check rules accepts the shipped rule file."""
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 10 rules found" in proc.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    """promtool test rules passes tests/alerts/alerts.test.yaml (firing and quiet cases for every alert)."""
    proc = subprocess.run([promtool, "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert tested == shipped, f"alerts without a unit test: {shipped - tested}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.25)


class _Proc:
    """A server process on a free loopback port, logging to a file."""

    def __init__(self, argv: Callable[[int], list[str]], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv(self.port), stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[str]:
    """A real serve: a KEDA pool at max 0 for ubuntu-latest jobs; nothing serves gpu."""
    data = base_config()
    data["pools"][0].update(name="keda", max=0, labels=["ubuntu-latest"])
    data["logging"] = {"level": "info", "format": "json"}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    env = dict(os.environ, RS_TEST_SECRET=SECRET)
    proc = _Proc(
        lambda port: [sys.executable, "-m", "scaler.cli", "serve", "--config", str(cfg), "--port", str(port)],
        tmp_path / "serve.log",
        env,
    )
    try:
        _until(lambda: _get_ok(f"{proc.url}/readyz"), 30, "serve to be ready")
        yield proc.url
    finally:
        proc.stop()


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def prometheus(prometheus_bin: str, serve: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on loopback scraping serve every second, with the rules' `for:` cut to 0s."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule.pop("for", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [{"job_name": "runner-scaler", "static_configs": [{"targets": [serve.split("//")[1]]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = _Proc(
        lambda port: [
            prometheus_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        _until(lambda: _get_ok(f"{proc.url}/-/ready"), 60, "prometheus to be ready")
        yield proc.url
    finally:
        proc.stop()


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5, trust_env=False)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def _firing(prom: str) -> set[str]:
    return {a["metric"]["alertname"] for a in _query(prom, 'ALERTS{alertstate="firing"}')}


def test_real_prometheus_evaluates_the_rules_against_serve(serve: str, prometheus: str) -> None:
    """Scraped for real: unservable jobs page, the KEDA pool's demand is queryable, and no false alarm fires."""
    forge = FakeForgeState(secret=SECRET)
    for labels in (["ubuntu-latest"], ["gpu"], ["gpu"]):
        _, headers, body = forge.queue_job("acme/app", labels)
        r = httpx.post(f"{serve}/webhooks/fake", content=body, headers=headers, timeout=5, trust_env=False)
        assert r.status_code in (200, 202), r.text
    # The query examples/keda/scaledobject-prometheus.yaml gives KEDA: a pool at max 0 reports its waiting job.
    _until(
        lambda: _query(prometheus, 'sum(runner_scaler_queued_jobs{pool="keda"}) == 1'), 30, "the KEDA pool's demand"
    )
    _until(lambda: "RunnerScalerUnservableJobs" in _firing(prometheus), 30, "RunnerScalerUnservableJobs to fire")
    (alert,) = _query(prometheus, 'ALERTS{alertstate="firing", alertname="RunnerScalerUnservableJobs"}')
    assert alert["metric"]["forge"] == "fake"
    assert _query(prometheus, "sum(runner_scaler_unservable_jobs)")[0]["value"][1] == "2"
    held = _query(prometheus, 'runner_scaler_held_back_jobs{pool="keda", reason="max"}')
    assert held[0]["value"][1] == "1"
    time.sleep(3)  # a few evaluations more: nothing else may fire (one leader, loops fresh, max-0 pool left out)
    assert _firing(prometheus) == {"RunnerScalerUnservableJobs"}, json.dumps(_query(prometheus, "ALERTS"))


def test_prometheus_service_script_is_idempotent(promtool: str) -> None:
    """A second install reuses what .ci/run installed, starts nothing, and exports the same binaries."""
    script = REPO / ".ci" / "services" / "prometheus.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_SCALER_TEST_")}
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'set -euo pipefail; source "{script}"; prometheus_install; prometheus_install; prometheus_start; '
            'prometheus_stop; echo "PROMTOOL=$RUNNER_SCALER_TEST_PROMTOOL"; echo "PROM=$RUNNER_SCALER_TEST_PROMETHEUS"',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("prometheus.sh: using prometheus, version 2.") >= 1
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert os.path.samefile(out["PROMTOOL"], promtool) and os.access(out["PROM"], os.X_OK)
