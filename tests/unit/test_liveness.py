"""/healthz means "every loop alive": a pass that keeps getting forge answers
is alive however long it takes; one that gets nothing is stale."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from scaler.clock import FakeClock
from scaler.forges._http import ForgeHTTP
from scaler.loops import Heartbeats, TaskSet, guarded_loop
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.web import create_app
from tests.conftest import make_harness

INTERVAL = 5.0
PAGES = 40
PAGE_TIME = 2.0  # 40 pages x 2 s: 80 s, sixteen intervals for one pass


class PagingForge(FakeForgeServer):
    """The HTTP fake forge, each answer taking PAGE_TIME on the test's clock."""

    clock_to_advance: FakeClock

    async def _dispatch(self, request: Request) -> Response:
        response = await super()._dispatch(request)
        self.clock_to_advance.advance(PAGE_TIME)
        return response


@pytest.fixture
def forge_server(harness_clock: FakeClock) -> Iterator[PagingForge]:
    srv = PagingForge("gitea", "1.25.0")
    srv.clock_to_advance = harness_clock
    with srv:
        yield srv


@pytest.fixture
def harness_clock() -> FakeClock:
    return FakeClock()


def paged_forge(srv: PagingForge) -> ForgeHTTP:
    """A real ForgeHTTP to the paging forge (answers come over loopback)."""
    return ForgeHTTP(forge="f", base_url=srv.url, timeout=5, headers={"authorization": f"token {srv.token}"})


LIST = "/api/v1/orgs/acme/actions/runners"


async def healthz(app: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:  # type: ignore[arg-type]
        return await client.get("/healthz")


async def test_a_long_paged_listing_keeps_its_loop_alive(forge_server: PagingForge, harness_clock: FakeClock) -> None:
    """A resync pass paging for sixteen intervals never turns /healthz 503: each page is progress."""
    harness = make_harness(clock=harness_clock)
    clock, hb = harness.clock, harness.scaler.heartbeats
    app = create_app(harness.scaler)
    forge = paged_forge(forge_server)
    codes: list[int] = []
    done = asyncio.Event()

    async def one_pass() -> None:
        for page in range(1, PAGES + 1):
            await forge.request("GET", LIST, endpoint="list_runners", params={"page": page, "limit": 50})
            codes.append((await healthz(app)).status_code)
        done.set()

    task = asyncio.create_task(guarded_loop("resync", INTERVAL, one_pass, hb))
    await done.wait()
    task.cancel()
    assert clock.now() >= PAGES * PAGE_TIME and codes == [200] * PAGES
    await forge.aclose()


async def test_a_pass_that_gets_no_answers_is_stale() -> None:
    """A pass hung on nothing that answers turns /healthz 503 after three intervals, naming the loop."""
    harness = make_harness()
    clock, hb = harness.clock, harness.scaler.heartbeats
    hung = asyncio.Event()

    async def one_pass() -> None:
        hung.set()
        await asyncio.Event().wait()  # never answers

    task = asyncio.create_task(guarded_loop("resync", INTERVAL, one_pass, hb))
    await hung.wait()
    clock.advance(3 * INTERVAL - 0.1)
    assert (await healthz(create_app(harness.scaler))).status_code == 200
    clock.advance(0.2)
    r = await healthz(create_app(harness.scaler))
    assert r.status_code == 503 and "resync" in r.json()["stale_loops"]
    task.cancel()


async def test_background_work_a_pass_started_is_not_its_progress(
    forge_server: PagingForge, harness_clock: FakeClock
) -> None:
    """Launches spawned by a pass that then hangs do not keep that pass's loop alive."""
    clock = harness_clock
    hb = Heartbeats(clock)
    forge = paged_forge(forge_server)
    tasks = TaskSet("launch")
    hung = asyncio.Event()

    async def launch() -> None:
        for _ in range(3 * int(INTERVAL / PAGE_TIME) + 2):  # past three intervals, answered all along
            await forge.request("GET", LIST, endpoint="list_runners")

    async def one_pass() -> None:
        tasks.spawn(launch())
        hung.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(guarded_loop("reconciler", INTERVAL, one_pass, hb))
    await hung.wait()
    await tasks.join()
    assert clock.now() > 3 * INTERVAL and "reconciler" in hb.stale()
    task.cancel()
    await forge.aclose()
