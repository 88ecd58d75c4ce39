"""The HTTP surface through Starlette's TestClient, with the lifespan (and so
the real background loops) running."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from scaler.app import Scaler
from scaler.clock import SystemClock
from scaler.config import parse_config
from scaler.provider import ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.web import create_app
from tests.conftest import SECRET, base_config


class Live:
    def __init__(self, client: TestClient, scaler: Scaler, forge: FakeForgeState, provider: MemoryProvider) -> None:
        self.client, self.scaler, self.forge, self.provider = client, scaler, forge, provider

    def post(self, headers: dict[str, str], body: bytes, forge: str = "fake") -> tuple[int, dict[str, object]]:
        r = self.client.post(f"/webhooks/{forge}", content=body, headers=headers)
        return r.status_code, r.json()

    def pool(self) -> dict[str, object]:
        r = self.client.get("/api/v1/pools/small")
        assert r.status_code == 200
        return r.json()  # type: ignore[no-any-return]


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.002)
    raise AssertionError("condition not met in time")


@pytest.fixture
def live() -> Iterator[Live]:
    data = base_config()
    data["server"] = {"max_body_bytes": 4096}
    config = parse_config(data)
    state = FakeForgeState(secret=SECRET, auto_online=True)
    provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
    scaler = Scaler(
        config, forges={"fake": FakeForge(config.forges[0], state)}, providers={"mem": provider}, clock=SystemClock()
    )
    with TestClient(create_app(scaler)) as client:
        yield Live(client, scaler, state, provider)


def test_full_cycle_through_http(live: Live) -> None:
    """queued → create within 50 ms; completed → deregister, then delete; API and metrics follow."""
    assert live.client.get("/readyz").status_code == 200
    ping = b'{"zen": "warm-up"}'
    assert live.post(live.forge.sign(ping, event="ping"), ping)[0] == 200  # first-request costs out of the way
    job, headers, body = live.forge.queue_job("acme/app", ["ubuntu-latest"])
    sent = time.perf_counter()
    assert live.post(headers, body)[0] == 202
    wait_until(lambda: bool(live.provider.calls))
    latency = live.provider.calls[0].at - sent
    assert latency < 0.05, f"webhook → create took {latency * 1000:.1f} ms"
    wait_until(lambda: live.pool()["instances"]["starting"] == 1)  # type: ignore[index]
    assert live.pool()["queued"] == 1
    name = live.provider.create_calls()[0]
    metrics = live.client.get("/metrics").text
    assert 'runner_scaler_queued_jobs{pool="small"} 1.0' in metrics
    assert 'runner_scaler_instances{pool="small",state="starting"} 1.0' in metrics

    runner = live.forge.runner_by_name(name)
    assert runner is not None
    order: list[str] = []
    live.provider.on_delete.append(
        lambda n: order.append("deregistered" if runner.id in live.forge.deregistered else "busy")
    )
    assert live.post(*live.forge.start_job(job, name))[0] == 202
    wait_until(lambda: live.pool()["in_progress"] == 1)
    assert live.pool()["instances"]["busy"] == 1  # type: ignore[index]
    assert live.post(*live.forge.complete_job(job))[0] == 202
    wait_until(lambda: not live.provider.instances)
    assert order == ["deregistered"]
    wait_until(lambda: live.pool()["instances"] == {k: 0 for k in live.pool()["instances"]})  # type: ignore[union-attr]
    assert live.pool()["queued"] == 0
    assert (
        'runner_scaler_webhooks_total{event="workflow_job",forge="fake",result="accepted"}'
        in live.client.get("/metrics").text
    )


def test_bad_signature_401(live: Live) -> None:
    """Missing or wrong signatures get 401 and change nothing."""
    from scaler.testing.fake_forge import FakeJob

    # A delivery for a job the forge's queue does not hold (polling must not find it).
    headers, body = live.forge.delivery(FakeJob(99, "acme/app", ("ubuntu-latest",)), "queued")
    assert live.post({**headers, "x-hub-signature-256": "sha256=" + "0" * 64}, body)[0] == 401
    no_sig = {k: v for k, v in headers.items() if k != "x-hub-signature-256"}
    assert live.post(no_sig, body)[0] == 401
    time.sleep(0.05)
    assert live.provider.calls == []


def test_unknown_forge_404(live: Live) -> None:
    """A webhook for a forge not in the config is 404."""
    _, headers, body = live.forge.queue_job("acme/app", ["ubuntu-latest"])
    status, doc = live.post(headers, body, forge="nope")
    assert status == 404 and "nope" in str(doc["error"])


def test_too_large_413(live: Live) -> None:
    """A body over max_body_bytes is refused with 413."""
    body = b'{"a": "' + b"x" * 5000 + b'"}'
    assert live.post(live.forge.sign(body), body)[0] == 413


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe\x00", b"[" * 2000 + b"]" * 2000, b'{"action": 1}'],
    ids=["empty", "text", "not-utf8", "nested-2000", "wrong-types"],
)
def test_malformed_400(live: Live, body: bytes) -> None:
    """Signed but malformed bodies get 400."""
    status, doc = live.post(live.forge.sign(body), body)
    assert status == 400, doc


def test_wrong_content_type_415(live: Live) -> None:
    """A signed delivery that is not JSON-typed gets 415."""
    _, headers, body = live.forge.queue_job("acme/app", ["ubuntu-latest"])
    assert live.post({**headers, "content-type": "application/x-www-form-urlencoded"}, body)[0] == 415


def test_ignored_and_unserved_200(live: Live) -> None:
    """Ping events and jobs no pool serves are answered 200 and ignored."""
    ping = json.dumps({"zen": "hi"}).encode()
    status, doc = live.post(live.forge.sign(ping, event="ping"), ping)
    assert status == 200 and doc["result"] == "ignored"
    _, headers, body = live.forge.queue_job("other/repo", ["ubuntu-latest"])
    status, doc = live.post(headers, body)
    assert status == 200 and doc["result"] == "not_served"


def test_a_delivered_job_no_pool_serves_is_counted_until_it_ends(live: Live) -> None:
    """A not_served delivery is still counted as unservable in /api/v1/forges, until its completion arrives."""

    def unservable() -> int:
        forges = live.client.get("/api/v1/forges").json()["forges"]
        assert [f["name"] for f in forges] == ["fake"]
        return int(forges[0]["unservable"])

    job_id, headers, body = live.forge.queue_job("other/repo", ["ubuntu-latest"])
    assert live.post(headers, body)[1]["result"] == "not_served"
    wait_until(lambda: unservable() == 1)
    assert live.pool()["queued"] == 0
    headers, body = live.forge.complete_job(job_id)
    assert live.post(headers, body)[1]["result"] == "not_served"
    wait_until(lambda: unservable() == 0)


def test_duplicate_delivery_200(live: Live) -> None:
    """The same delivery id twice: 202 then 200 duplicate, one instance."""
    _, headers, body = live.forge.queue_job("acme/app", ["ubuntu-latest"])
    assert live.post(headers, body)[0] == 202
    status, doc = live.post(headers, body)
    assert status == 200 and doc["result"] == "duplicate"
    wait_until(lambda: bool(live.provider.calls))
    time.sleep(0.05)
    assert len(live.provider.create_calls()) == 1


def test_queue_full_503(live: Live) -> None:
    """When the event queue is full the delivery gets 503 and is counted."""
    live.scaler.inbox.maxsize = 0
    _, headers, body = live.forge.queue_job("acme/app", ["ubuntu-latest"])
    assert live.post(headers, body)[0] == 503
    assert "runner_scaler_events_dropped_total" in live.client.get("/metrics").text


def test_api_lists(live: Live) -> None:
    """/api/v1/pools lists every pool; unknown pool is 404; instances list is JSON."""
    assert [p["name"] for p in live.client.get("/api/v1/pools").json()["pools"]] == ["small"]
    assert live.client.get("/api/v1/pools/nope").status_code == 404
    assert live.client.get("/api/v1/instances").json() == {"instances": []}


def test_dead_loop_fails_healthz(live: Live) -> None:
    """A loop that stops beating turns /healthz unhealthy."""
    assert live.client.get("/healthz").status_code == 200
    hb = live.scaler.heartbeats
    interval, _ = hb._beats["resync"]
    hb._beats["resync"] = (interval, time.time() - 4 * interval)
    r = live.client.get("/healthz")
    assert r.status_code == 503 and "resync" in r.json()["stale_loops"]


async def test_crashing_pass_is_counted_and_loop_survives() -> None:
    """An exception in a pass is logged and counted; the loop goes on beating."""
    import asyncio

    from scaler.clock import FakeClock
    from scaler.loops import Heartbeats, guarded_loop

    clock = FakeClock()
    hb = Heartbeats(clock)
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    task = asyncio.create_task(guarded_loop("t", 0.001, body, hb))
    while calls < 3:
        await asyncio.sleep(0.001)
    task.cancel()
    assert hb.stale() == {}
    clock.advance(10)
    assert "t" in hb.stale()


async def test_wait_or_timeout_honours_a_cancel_that_meets_a_wake() -> None:
    """A wait cancelled in the loop turn its event is set raises CancelledError, so a stopping loop stops."""
    import asyncio

    from scaler.loops import wait_or_timeout

    event = asyncio.Event()
    task = asyncio.create_task(wait_or_timeout(event, 60))
    await asyncio.sleep(0)  # the task now waits on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_does_not_wait_for_ever_on_a_loop_that_ignores_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() gives a cancelled loop STOP_GRACE, then logs it by name and goes on shutting down."""
    import asyncio
    import contextlib
    from collections.abc import AsyncIterator

    import structlog

    from scaler import app as app_module
    from scaler.provider import InstanceInfo

    class Stubborn(MemoryProvider):
        """Swallows the first cancellation of its watch, as 3.11's wait_for could."""

        async def watch(self) -> AsyncIterator[InstanceInfo]:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            await asyncio.Event().wait()  # cancelled again at loop teardown
            yield  # type: ignore[misc]  # never reached; makes this an async generator

    monkeypatch.setattr(app_module, "STOP_GRACE", 0.05)
    config = parse_config(base_config())
    provider = Stubborn(ProviderSettings("mem", "memory", "rs", {}))
    scaler = Scaler(
        config,
        forges={"fake": FakeForge(config.forges[0], FakeForgeState(secret=SECRET))},
        providers={"mem": provider},
        clock=SystemClock(),
    )
    await scaler.start()
    await asyncio.sleep(0)  # the watch task reaches its first wait
    with structlog.testing.capture_logs() as logs:
        await scaler.stop()
    assert any(e["event"] == "background loop did not stop when cancelled" and e["loop"] == "watch-mem" for e in logs)
