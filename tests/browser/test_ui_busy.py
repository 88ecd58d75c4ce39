"""The UI on a busy scaler: a few hundred jobs and instances over four pools
and two providers, a pool at its max and deliveries no pool serves. The pages
must stay quick and say at a glance what waits, where it will run and why."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browser
from tests.browser.harness import Forge, screenshot, serving

pytestmark = pytest.mark.browser

CANARY = "canary-busy-secret-0c4a7e55d1"
CONFIG = """
controller_id: busy
forges:
  - {name: local, type: fake, url: "http://127.0.0.1:3000", scope: {kind: organization, name: example},
     webhook_secret_envs: [RUNNER_SCALER_WEBHOOK_SECRET]}
providers:
  - {name: memory, type: memory, max_instances: 400}
  - {name: edge, type: memory, max_instances: 60}
pools:
  - {name: small, forge: local, provider: memory, labels: ["ubuntu-latest:docker://node:20", "self-hosted"],
     min_idle: 2, max: 200, repositories: ["example/*"]}
  - {name: large, forge: local, provider: memory, labels: ["large:host"], max: 120, repositories: ["example/*"]}
  - {name: gpu, forge: local, provider: edge, labels: ["gpu:host"], max: 6, repositories: ["example/ml"]}
  - {name: arm, forge: local, provider: edge, labels: ["arm64:host"], min_idle: 1, max: 40}
limits: {max_instances: 400}
timing: {reconcile_interval: 2s, resync_interval: 10m, collect_interval: 2s}
ui: {sample_interval: 1s, page_rows: 500}
"""
WAVE = [
    ("example/app", ["ubuntu-latest"], 34),
    ("example/web", ["large"], 9),
    ("example/ml", ["gpu"], 4),
    ("example/app", ["arm64"], 3),
    ("other/fork", ["ubuntu-latest"], 1),  # not in any allow-list
    ("example/app", ["windows-latest"], 1),  # labels no pool has
]


POOL_OF = {"ubuntu-latest": "small", "large": "large", "gpu": "gpu", "arm64": "arm"}


def free_instances(url: str) -> dict[str, list[str]]:
    """Per pool, the instances not yet running a job (the runners a job may land on)."""
    out: dict[str, list[str]] = {}
    for i in httpx.get(f"{url}/api/v1/instances", timeout=10).json()["instances"]:
        if i["state"] in ("creating", "starting", "idle"):
            out.setdefault(i["pool"], []).append(i["name"])
    return out


def timed(url: str) -> list[float]:
    """Seconds per live refresh of the page (what an open tab asks every second)."""
    out = []
    with httpx.Client(timeout=10) as client:
        for _ in range(15):
            t0 = time.perf_counter()
            assert client.get(url, headers={"hx-request": "true"}).status_code == 200
            out.append(time.perf_counter() - t0)
    return out


def test_busy_scaler_pages(tmp_path: Path, browser: Browser) -> None:
    """With ~350 jobs and ~250 instances each page renders quickly, shows the held-back and unserved jobs and why."""
    (tmp_path / "config.yaml").write_text(CONFIG)
    env = {"RUNNER_SCALER_WEBHOOK_SECRET": CANARY}
    with serving(tmp_path / "config.yaml", env, tmp_path / "serve.log") as serve:
        forge = Forge(serve.url, "local", CANARY)
        queued = []
        for wave in range(7):  # spread over a few seconds: the charts get a shape
            queued += [forge.queue(repo, labels) for repo, labels, n in WAVE for _ in range(n + wave % 3)]
            time.sleep(0.2)  # the reconciler's pass
            free = free_instances(serve.url)
            for job in queued[wave * 40 : wave * 40 + 25]:
                runners = free.get(POOL_OF.get(job.labels[0], ""), [])
                if runners and job.status == "queued":
                    forge.start(job, runners.pop())
            for job in [j for j in queued if j.status == "in_progress"][: 6 + wave]:
                forge.complete(job)
            time.sleep(0.8)
        assert len(queued) > 300
        assert sum(j.status != "queued" for j in queued) > 100

        overview = browser.page()
        overview.page.goto(f"{serve.url}/ui/")
        gpu = overview.page.locator("table.pools tbody tr").filter(has_text="gpu")
        expect(gpu).to_contain_text("6 / 6", timeout=3000)
        screenshot(overview.page, "busy-overview")

        jobs = browser.page()
        jobs.page.goto(f"{serve.url}/ui/jobs?state=waiting")
        body = jobs.page.locator("tbody")
        expect(body).to_contain_text("held back — gpu: at its max (6/6)")
        expect(body).to_contain_text("no pool serves it: no label match")
        expect(body.locator("tr").filter(has_text="other/fork").first).to_contain_text("repository not allowed")
        screenshot(jobs.page, "busy-jobs-full")
        screenshot(jobs.page, "busy-jobs", full_page=False)

        listing = browser.page()
        listing.page.goto(f"{serve.url}/ui/instances")
        assert listing.page.locator("tbody tr").count() > 200
        screenshot(listing.page, "busy-instances-full")
        screenshot(listing.page, "busy-instances", full_page=False)

        held = next(j for j in reversed(queued) if j.repository == "example/ml" and j.status == "queued")
        story = browser.page()
        story.page.goto(f"{serve.url}/ui/jobs/local/{held.id}")
        expect(story.page.locator(".why")).to_contain_text("Held back")
        screenshot(story.page, "busy-job-held")

        figures = {page: timed(f"{serve.url}/ui/{page}") for page in ("", "instances", "jobs")}
        for page, seconds in figures.items():
            median, worst = statistics.median(seconds) * 1000, max(seconds) * 1000
            print(f"live refresh of /ui/{page}: median {median:.1f} ms, max {worst:.1f} ms")
            assert statistics.median(seconds) < 1.0, f"/ui/{page} renders slower than it refreshes: {seconds}"
        for w in (overview, jobs, listing, story):
            assert CANARY not in w.page.content()
            assert w.csp_violations() == []
            assert w.errors == [] and w.console_errors() == []
