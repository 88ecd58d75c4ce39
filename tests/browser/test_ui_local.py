"""The UI in Debian's chromium against a real ``serve`` of examples/local:
signed deliveries over HTTP, live pages, no secret in the DOM, the CSP holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browser, Watched
from tests.browser.harness import REPO, Forge, Serve, screenshot, serving

pytestmark = pytest.mark.browser

CANARY = "canary-webhook-secret-7d2e91c4b0"
LIVE = 2.0  # seconds: what the issue asks of a live update


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serving(REPO / "examples/local/config.yaml", {"RUNNER_SCALER_WEBHOOK_SECRET": CANARY}, log) as serve:
        yield serve


def free_instance(url: str, pool: str) -> str:
    """A not-yet-busy instance with no job of its own (min_idle supply)."""
    for inst in httpx.get(f"{url}/api/v1/instances", timeout=5).json()["instances"]:
        if inst["pool"] == pool and inst["job_id"] is None and inst["state"] in ("creating", "starting", "idle"):
            return str(inst["name"])
    raise AssertionError("no free instance")


def assert_clean(w: Watched, *secrets: str) -> None:
    """Nothing secret in the DOM nor in any response; no CSP violation, no error."""
    dom = w.page.content()
    for secret in (*secrets, "fake-runner-token-"):
        assert secret not in dom, f"{secret!r} in the DOM"
        for url, body in w.bodies:
            assert secret not in body, f"{secret!r} in the response of {url}"
    assert w.csp_violations() == []
    assert w.errors == []
    assert w.console_errors() == []


def open_page(browser: Browser, url: str) -> Watched:
    w = browser.page()
    w.page.goto(url)
    w.page.evaluate("window.__loaded = 'once'")  # a reload would lose it
    return w


def test_job_pool_and_instance_appear_live(local: Serve, browser: Browser) -> None:
    """A queued job shows with its pool on the open jobs, overview and instances pages within 2 s, then its instance."""
    forge = Forge(local.url, "local", CANARY)
    jobs = open_page(browser, f"{local.url}/ui/jobs")
    overview = open_page(browser, f"{local.url}/ui/")
    instances = open_page(browser, f"{local.url}/ui/instances")
    sent = time.monotonic()
    job = forge.queue("example/app", ["ubuntu-latest"])
    row = jobs.page.locator("tbody tr").filter(has_text=f"local#{job.id}")
    expect(row).to_contain_text("given to pool small", timeout=LIVE * 1000)
    expect(overview.page.locator(".tile").first).to_contain_text("1", timeout=LIVE * 1000)
    assert time.monotonic() - sent < LIVE, "the job and its pool took more than 2 s to show"

    runner = free_instance(local.url, "small")
    started = time.monotonic()
    forge.start(job, runner)
    expect(row).to_contain_text(runner, timeout=LIVE * 1000)
    expect(row).to_contain_text("ran on pool small", timeout=LIVE * 1000)
    inst_row = instances.page.locator("tbody tr").filter(has_text=runner)
    expect(inst_row).to_contain_text(f"local#{job.id}", timeout=LIVE * 1000)
    expect(inst_row).to_contain_text("busy", timeout=LIVE * 1000)
    assert time.monotonic() - started < LIVE, "the job's instance took more than 2 s to show"

    for w in (jobs, overview, instances):
        assert w.page.evaluate("window.__loaded") == "once", "the page was reloaded"
        assert_clean(w, CANARY)
    screenshot(overview.page, "overview")
    screenshot(instances.page, "instances")
    screenshot(jobs.page, "jobs")


def test_story_told_live_to_teardown(local: Serve, browser: Browser) -> None:
    """One job's story fills in live: queued, given to a pool, started on an instance, completed, torn down."""
    forge = Forge(local.url, "local", CANARY)
    job = forge.queue("example/lib", ["self-hosted", "ubuntu-latest"])
    story = open_page(browser, f"{local.url}/ui/jobs/local/{job.id}")
    timeline = story.page.locator("table.timeline")
    expect(timeline).to_contain_text("queued in example/lib", timeout=LIVE * 1000)
    expect(timeline).to_contain_text("given to pool small", timeout=LIVE * 1000)
    runner = free_instance(local.url, "small")
    forge.start(job, runner)
    expect(timeline).to_contain_text(f"started on runner {runner}", timeout=LIVE * 1000)
    expect(timeline).to_contain_text("instance created", timeout=LIVE * 1000)  # its trail, tied to the job
    forge.complete(job)
    expect(timeline).to_contain_text("completed", timeout=LIVE * 1000)
    expect(timeline).to_contain_text("torn down", timeout=10_000)  # the collector's pass
    kinds = story.page.locator("table.timeline .k").all_inner_texts()
    order = [k for k in ("QUEUED", "POOL", "STARTED", "COMPLETED", "TORN DOWN") if k in kinds]
    assert order == ["QUEUED", "POOL", "STARTED", "COMPLETED", "TORN DOWN"], kinds
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order), kinds
    assert story.page.evaluate("window.__loaded") == "once"
    assert_clean(story, CANARY)
    screenshot(story.page, "job-story")


def test_unserved_job_shows_why(local: Serve, browser: Browser) -> None:
    """A delivery no pool serves (answered 200 not_served) shows on the jobs page with explain's reason."""
    forge = Forge(local.url, "local", CANARY)
    jobs = open_page(browser, f"{local.url}/ui/jobs")
    elsewhere = forge.queue("elsewhere/app", ["ubuntu-latest"])
    gpu = forge.queue("example/app", ["gpu-xl"])
    for job, why in ((elsewhere, "repository not allowed"), (gpu, "no label match")):
        row = jobs.page.locator("tbody tr").filter(has_text=f"local#{job.id}")
        expect(row).to_contain_text("no pool serves it", timeout=LIVE * 1000)
        expect(row).to_contain_text(why, timeout=LIVE * 1000)
        expect(row.locator(".st")).to_have_text("unserved")
    story = open_page(browser, f"{local.url}/ui/jobs/local/{elsewhere.id}")
    box = story.page.locator(".why")
    expect(box).to_contain_text("No pool serves this job")
    expect(box).to_contain_text("repository not allowed: elsewhere/app is not in the allow-list of small")
    expect(box).to_contain_text("runner-scaler explain")
    expect(story.page.locator("table.timeline")).to_contain_text("not served")
    assert_clean(jobs, CANARY)
    assert_clean(story, CANARY)
    screenshot(story.page, "job-unserved")


def test_csp_blocks_inline_code(local: Serve, browser: Browser) -> None:
    """The pages cause no CSP violation, and the policy really refuses an inline script and an inline style."""
    w = open_page(browser, f"{local.url}/ui/")
    w.page.wait_for_timeout(1500)  # at least one live refresh
    assert w.csp_violations() == []
    w.page.evaluate(
        """() => {
            const s = document.createElement('script');
            s.textContent = 'window.__inline = 1';
            document.body.appendChild(s);
            document.body.setAttribute('style', 'background: red');
        }"""
    )
    w.page.wait_for_timeout(200)
    assert w.page.evaluate("window.__inline") is None
    found = " ".join(w.page.evaluate("window.__csp"))
    assert "script-src" in found and "style-src" in found, found
    header = httpx.get(f"{local.url}/ui/", timeout=5).headers["content-security-policy"]
    assert "script-src 'self'" in header and "unsafe-inline" not in header and "unsafe-eval" not in header


PASSWORD = "canary-ui-password-3b8f0e1a"


@pytest.mark.http_credentials({"username": "operator", "password": PASSWORD})
def test_basic_auth_from_secret_file(tmp_path: Path, browser: Browser) -> None:
    """With ui.auth the pages need the password from its file; with it, nothing secret reaches the DOM."""
    password = PASSWORD
    (tmp_path / "ui-password").write_text(password + "\n")
    (tmp_path / "ui-password").chmod(0o600)
    config = (REPO / "examples/local/config.yaml").read_text() + (
        "ui:\n  enabled: true\n  auth:\n    type: basic\n    username: operator\n"
        f"    password_file: {tmp_path / 'ui-password'}\n"
    )
    (tmp_path / "config.yaml").write_text(config)
    with serving(tmp_path / "config.yaml", {"RUNNER_SCALER_WEBHOOK_SECRET": CANARY}, tmp_path / "serve.log") as serve:
        anonymous = httpx.get(f"{serve.url}/ui/", timeout=5)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic ")
        wrong = httpx.get(f"{serve.url}/ui/", auth=("operator", password + "x"), timeout=5)
        assert wrong.status_code == 401
        assert httpx.get(f"{serve.url}/ui/", auth=("operator", password), timeout=5).status_code == 200
        assert httpx.get(f"{serve.url}/api/v1/pools", timeout=5).status_code == 200  # the API is not the UI
        forge = Forge(serve.url, "local", CANARY)
        forge.queue("example/app", ["ubuntu-latest"])
        w = open_page(browser, f"{serve.url}/ui/jobs")
        expect(w.page.locator("tbody tr").first).to_contain_text("given to pool small", timeout=LIVE * 1000)
        w.page.wait_for_timeout(1200)  # a live refresh, with the credentials
        assert_clean(w, CANARY, password, "Authorization", "b3BlcmF0b3I6")  # base64 of "operator:"
