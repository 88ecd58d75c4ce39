"""``/ui`` through Starlette's TestClient with the real loops: the gate, auth,
headers, escaping of hostile input, masking of secrets, and the config keys."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape
from starlette.testclient import TestClient

from scaler.app import Scaler
from scaler.clock import SystemClock
from scaler.config import UIConfig, parse_config
from scaler.errors import ConfigError, ProviderTemporaryError
from scaler.provider import ProviderSettings
from scaler.secrets import Secret
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.web import create_app
from scaler.web.ui.charts import chart, nice_top
from scaler.web.ui.gate import CSP, Credentials, is_loopback
from scaler.web.ui.history import History, Sample
from tests.conftest import SECRET, base_config
from tests.unit.test_web import wait_until


class Live:
    def __init__(self, client: TestClient, scaler: Scaler, forge: FakeForgeState, provider: MemoryProvider) -> None:
        self.client, self.scaler, self.forge, self.provider = client, scaler, forge, provider

    def queue(self, repo: str = "acme/app", labels: tuple[str, ...] = ("ubuntu-latest",)) -> tuple[int, Any]:
        job, headers, body = self.forge.queue_job(repo, list(labels))
        return job, self.client.post("/webhooks/fake", content=body, headers=headers)


@pytest.fixture
def make_live() -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(ui: dict[str, Any] | None = None) -> Live:
        config = parse_config(base_config(ui={"enabled": True, **(ui or {})}))
        state = FakeForgeState(secret=SECRET, auto_online=True)
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        forges = {"fake": FakeForge(config.forges[0], state)}
        scaler = Scaler(config, forges=forges, providers={"mem": provider}, clock=SystemClock())
        client = TestClient(create_app(scaler))
        client.__enter__()
        opened.append(client)
        return Live(client, scaler, state, provider)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_every_page_and_fragment_renders_with_strict_headers(make_live: Any) -> None:
    """Each page renders whole, its live part alone on an htmx request, with the CSP and no caching."""
    live = make_live()
    job, _ = live.queue()
    wait_until(lambda: bool(live.scaler.store.instances))
    for url in ("/ui/", "/ui/instances", "/ui/jobs", f"/ui/jobs/fake/{job}", "/ui/instances?state=pending&pool=small"):
        page = live.client.get(url)
        assert page.status_code == 200, url
        assert page.text.startswith("<!doctype html>") and 'id="live"' in page.text
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert " style=" not in page.text and "<script>" not in page.text  # nothing inline
        part = live.client.get(url, headers={"hx-request": "true"})
        assert part.status_code == 200 and "<html" not in part.text
    static = live.client.get("/ui/static/ui.css")
    assert static.status_code == 200 and static.headers["cache-control"] == "no-cache"
    assert live.client.get("/ui").status_code == 200  # redirected to /ui/


def test_read_only_and_unknown_job(make_live: Any) -> None:
    """Only GET and HEAD are served; an unknown job is a clear 404."""
    live = make_live()
    assert live.client.post("/ui/", content=b"x").status_code == 405
    missing = live.client.get("/ui/jobs/fake/424242")
    assert missing.status_code == 404 and "no job 424242" in missing.text
    assert live.client.get("/ui/jobs/fake/not-a-number").status_code == 404


def test_auto_serves_loopback_clients_only(make_live: Any) -> None:
    """ui.enabled auto refuses a client that is not on loopback (the TestClient's is not)."""
    live = make_live({"enabled": "auto"})
    r = live.client.get("/ui/")
    assert r.status_code == 403 and "loopback clients only" in r.text
    assert live.client.get("/healthz").status_code == 200


def test_disabled_ui_is_absent() -> None:
    """ui.enabled false mounts no /ui at all."""
    config = parse_config(base_config(ui={"enabled": False}))
    scaler = Scaler(
        config, forges={"fake": FakeForge(config.forges[0])}, providers={"mem": MemoryProvider()}, clock=SystemClock()
    )
    with TestClient(create_app(scaler)) as client:
        assert client.get("/ui/").status_code == 404


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1", "localhost"])
def test_loopback_addresses(host: str) -> None:
    """Loopback in v4, v6 and v4-mapped v6 form counts as local."""
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "testclient", "", None, "127.0.0.1.example", "fe80::1%eth0"])
def test_not_loopback(host: str | None) -> None:
    """Anything else is not local."""
    assert not is_loopback(host)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_from_a_file(make_live: Any, tmp_path: Path) -> None:
    """With basic auth only the right user and password get in; 401 carries the challenge."""
    (tmp_path / "pw").write_text("s3cret-ui-password\n")
    live = make_live({"auth": {"type": "basic", "username": "ops", "password_file": str(tmp_path / "pw")}})
    r = live.client.get("/ui/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Basic realm="runner-scaler"')
    assert r.headers["content-security-policy"] == CSP
    for header in (_basic("ops", "wrong"), _basic("other", "s3cret-ui-password"), "Bearer s3cret-ui-password"):
        assert live.client.get("/ui/", headers={"authorization": header}).status_code == 401
    ok = live.client.get("/ui/", headers={"authorization": _basic("ops", "s3cret-ui-password")})
    assert ok.status_code == 200 and "s3cret-ui-password" not in ok.text
    static = live.client.get("/ui/static/ui.css")
    assert static.status_code == 401  # every /ui path, static files too


def test_bearer_auth_from_env(make_live: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With bearer auth only the token gets in."""
    monkeypatch.setenv("RS_UI_TOKEN", "tok-0123456789abcdef")
    live = make_live({"auth": {"type": "bearer", "token_env": "RS_UI_TOKEN"}})
    assert live.client.get("/ui/").headers["www-authenticate"].startswith("Bearer")
    assert live.client.get("/ui/", headers={"authorization": "Bearer tok-0123456789abcdeX"}).status_code == 401
    assert live.client.get("/ui/", headers={"authorization": "Bearer tok-0123456789abcdef"}).status_code == 200


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_credentials_refuse_any_other_header(header: str) -> None:
    """No Authorization header but the exact one passes, and none raises."""
    creds = Credentials("basic", Secret("pa:ss-wörd-123"), "ops")
    assert creds.allows(header) == (header.strip() == _basic("ops", "pa:ss-wörd-123"))
    assert creds.allows(_basic("ops", "pa:ss-wörd-123"))
    assert not creds.allows("Basic " + base64.b64encode(b"ops").decode())  # no colon


def test_secrets_never_reach_the_page(make_live: Any) -> None:
    """An error text carrying a secret (webhook secret, runner token) is masked on every page."""
    live = make_live()
    live.provider.fail_next_create(ProviderTemporaryError(f"auth failed with {SECRET} and the runner token"))
    job, _ = live.queue()
    wait_until(lambda: any(i.last_error for i in live.scaler.store.instances.values()))
    pages = [live.client.get(u).text for u in ("/ui/", "/ui/instances", "/ui/jobs", f"/ui/jobs/fake/{job}")]
    assert all(SECRET not in p for p in pages)
    assert "[REDACTED]" in pages[1] and "[REDACTED]" in pages[3]
    wait_until(lambda: bool(live.forge.runners))
    for runner in live.forge.runners.values():
        assert all(runner.token.reveal() not in live.client.get(u).text for u in ("/ui/instances", "/ui/jobs"))


HOSTILE = st.text(alphabet=st.sampled_from(list("<>\"'&/ ;=%a1:")), max_size=40)


@given(pool=HOSTILE, state=HOSTILE)
@settings(max_examples=60, deadline=None)
def test_hostile_query_is_escaped(pool: str, state: str, make_live_once: Any) -> None:
    """Whatever the query string holds, the pages answer 200 and never echo markup unescaped."""
    # A marker no template holds: echoed unescaped, either value would show it.
    pool, state = "<zq" + pool, "<zq" + state
    for page in ("/ui/instances", "/ui/jobs", "/ui/"):
        for page_no in ("", "2", "-1", "99999999999", "x"):
            r = make_live_once.client.get(page, params={"pool": pool, "state": state, "page": page_no})
            assert r.status_code == 200
            assert "<zq" not in r.text


@pytest.fixture(scope="module")
def make_live_once() -> Iterator[Live]:
    mp = pytest.MonkeyPatch()
    mp.setenv("RS_TEST_SECRET", SECRET)
    config = parse_config(base_config(ui={"enabled": True}))
    state = FakeForgeState(secret=SECRET)
    provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
    scaler = Scaler(config, forges={"fake": FakeForge(config.forges[0], state)}, providers={"mem": provider})
    with TestClient(create_app(scaler)) as client:
        yield Live(client, scaler, state, provider)
    mp.undo()


def test_not_served_delivery_is_in_the_journal(make_live: Any) -> None:
    """A delivery answered 200 not_served is kept in the journal, with explain's reason, and shown."""
    live = make_live()
    job, r = live.queue("elsewhere/app")
    assert r.json()["result"] == "not_served"
    page = live.client.get("/ui/jobs?state=unserved").text
    assert f"fake#{job}" in page and "repository not allowed" in page
    story = live.client.get(f"/ui/jobs/fake/{job}").text
    assert "elsewhere/app is not in the allow-list of small" in story


def test_sampler_keeps_a_bounded_hour(make_live: Any) -> None:
    """The sampler loop beats its heartbeat and keeps samples per pool."""
    live = make_live({"sample_interval": "1s"})
    wait_until(lambda: "ui-sampler" in live.scaler.heartbeats._beats)
    time.sleep(0.05)
    history = History(every=10.0, window=100.0)
    for i in range(50):
        history.add("p", Sample(float(i * 10), i, 0.0, None))
    assert len(history.series("p", 490.0)) == 11


def test_charts() -> None:
    """Chart tops are 1-2-5 steps; a step series holds each value until the next sample."""
    assert [nice_top(v) for v in (0, 1, 1.5, 3, 7, 11, 480)] == [1, 1, 2, 5, 10, 20, 500]
    c = chart([(0.0, 0.0), (50.0, 10.0), (100.0, 5.0)], 0.0, 100.0, step=True, dots=[(50.0, 7.0)])
    assert c.top == 10 and c.last == 5.0
    assert c.line == "0,38 100,38 100,2 200,2 200,20"
    assert c.area.startswith("0,40 ") and c.area.endswith(" 200,40")
    assert chart([], 0.0, 1.0).empty


@pytest.mark.parametrize(
    ("ui", "problem"),
    [
        ({"refresh": "5s"}, "ui.refresh: must be between 250ms and 2s (got 5s)"),
        ({"sample_interval": "0s"}, "ui.sample_interval: must be between 1s and 5m (got 0s)"),
        ({"check_interval": "2s"}, "ui.check_interval: must be 0 (never) or at least 10s (got 2s)"),
        ({"enabled": "sometimes"}, "ui.enabled"),
        ({"colour": "blue"}, "ui.colour: unknown key"),
        ({"auth": {"type": "basic", "password_file": "/x"}}, "ui.auth.username: basic auth needs a username"),
        ({"auth": {"type": "basic", "username": "a"}}, "ui.auth.password_file: basic auth needs exactly one of"),
        ({"auth": {"type": "bearer", "token_file": "/x", "password_env": "P"}}, "ui.auth.password_file: not used"),
        ({"auth": {"type": "basic", "username": "a", "password": "hunter2"}}, "ui.auth.password: secrets are never"),
        ({"auth": {"type": "basic", "username": "a:b", "password_env": "P"}}, "ui.auth.username"),
    ],
)
def test_ui_config_errors_name_the_key(ui: dict[str, Any], problem: str) -> None:
    """Each bad ui: key is reported with its path and the reason."""
    with pytest.raises(ConfigError) as err:
        parse_config(base_config(ui=ui))
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_ui_config_defaults_and_frozen() -> None:
    """The defaults: served to loopback clients, refreshed every second; the object is frozen."""
    ui = parse_config(base_config()).ui
    assert (ui.enabled, ui.refresh, ui.auth, ui.on) == ("auto", 1.0, None, True)
    with pytest.raises(ValueError, match="frozen"):
        ui.refresh = 2.0  # type: ignore[misc]
    assert UIConfig(enabled=False).on is False


def test_check_reports_a_missing_ui_secret(tmp_path: Path) -> None:
    """`check` names a ui.auth secret file that cannot be read."""
    from scaler.cli import _ui_findings

    config = parse_config(
        base_config(ui={"auth": {"type": "basic", "username": "a", "password_file": str(tmp_path / "nope")}})
    )
    (finding,) = _ui_findings(config)
    assert finding.level == "error" and "does not exist" in finding.message


def test_tables_come_in_pages(make_live: Any) -> None:
    """A table longer than page_rows comes a page at a time, linked; a page past the end is the last."""
    live = make_live({"page_rows": 10})
    jobs = [live.queue()[0] for _ in range(25)]
    wait_until(lambda: len(live.scaler.store.queued_seen) == 25)
    seen: list[str] = []
    dash = "\N{EN DASH}"
    for page, shown in (("1", "1 10"), ("2", "11 20"), ("3", "21 25"), ("99", "21 25")):
        params = {"state": "waiting", "page": page}
        text = live.client.get("/ui/jobs", params=params, headers={"hx-request": "true"}).text
        assert shown.replace(" ", dash) + " of 25" in text, page
        seen.append(text)
    assert "page=2" in seen[0] and "page=4" not in seen[2] and "page=3" in seen[1]
    assert f"fake#{jobs[0]}<" in seen[0] and f"fake#{jobs[0]}<" not in seen[1]  # longest waiting first
    assert f"fake#{jobs[24]}<" in seen[2]


def test_warm_pool_target_on_the_overview() -> None:
    """A warm pool's target idle runners and why are on the overview, as /api/v1/pools has them."""
    data = base_config(ui={"enabled": True})
    data["pools"][0]["warm"] = {"target_wait": "30s", "start_time": "20s"}
    config = parse_config(data)
    provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
    scaler = Scaler(config, forges={"fake": FakeForge(config.forges[0])}, providers={"mem": provider})
    with TestClient(create_app(scaler)) as client:
        wait_until(lambda: scaler.ready)
        warm = client.get("/api/v1/pools").json()["pools"][0]["warm"]
        page = client.get("/ui/", headers={"hx-request": "true"}).text
    assert warm is not None and f'<span class="strong">{warm["target_idle"]}</span> idle' in page
    assert str(escape(warm["reason"])) in page  # (escaped: a reason may say "<=")


def test_a_job_held_by_a_crash_loop_says_so(make_live: Any) -> None:
    """A job waiting on a pool in crash-loop backoff shows the backoff, the streak and the last error."""
    live = make_live()
    now = live.scaler.clock.now()
    for _ in range(6):  # a backoff of 16 s, longer than this test
        live.scaler.store.boot_failures.ended_before_online("small", now, "exit code 127")
    # Set directly, the backoff reaches the planner with the next timed full plan
    # (an instance's end would ask for one at once).
    reconciler = live.scaler.reconciler
    wait_until(lambda: "small" in getattr(reconciler.last_plan.placement, "crash_loops", ()))
    job, r = live.queue()
    assert r.status_code == 202
    wait_until(lambda: live.scaler.pool_stats()["small"]["held_back"] == 1)
    page = live.client.get("/ui/jobs?state=waiting").text
    assert f"fake#{job}" in page and "crash-loop backoff" in page
    story = live.client.get(f"/ui/jobs/fake/{job}").text
    assert "6 runners in a row ended before coming online; last: exit code 127" in story
    assert live.scaler.pool_stats()["small"]["crash_loop"]["ended_before_online"] == 6
