"""/healthz means "every loop alive": a pass that keeps getting forge answers
is alive however long it takes; one that gets nothing is stale."""

from __future__ import annotations

import asyncio

import httpx

from scaler.clock import FakeClock
from scaler.forges._http import ForgeHTTP
from scaler.loops import Heartbeats, TaskSet, guarded_loop
from scaler.web import create_app
from tests.conftest import make_harness

INTERVAL = 5.0
PAGES = 40
PAGE_TIME = 2.0  # 40 pages x 2 s: 80 s, sixteen intervals for one pass


def paged_forge(clock: FakeClock) -> ForgeHTTP:
    """A forge whose every page takes PAGE_TIME on the clock."""

    async def answer(request: httpx.Request) -> httpx.Response:
        clock.advance(PAGE_TIME)
        return httpx.Response(200, json={"runners": [], "total_count": PAGES * 50})

    return ForgeHTTP(forge="f", base_url="http://127.0.0.1", timeout=5, transport=httpx.MockTransport(answer))


async def healthz(app: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:  # type: ignore[arg-type]
        return await client.get("/healthz")


async def test_a_long_paged_listing_keeps_its_loop_alive() -> None:
    """A resync pass paging for sixteen intervals never turns /healthz 503: each page is progress."""
    harness = make_harness()
    clock, hb = harness.clock, harness.scaler.heartbeats
    app = create_app(harness.scaler)
    forge = paged_forge(clock)
    codes: list[int] = []
    done = asyncio.Event()

    async def one_pass() -> None:
        for page in range(1, PAGES + 1):
            await forge.request("GET", "/runners", endpoint="list_runners", params={"page": page})
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


async def test_background_work_a_pass_started_is_not_its_progress() -> None:
    """Launches spawned by a pass that then hangs do not keep that pass's loop alive."""
    clock = FakeClock()
    hb = Heartbeats(clock)
    forge = paged_forge(clock)
    tasks = TaskSet("launch")
    hung = asyncio.Event()

    async def launch() -> None:
        for _ in range(3 * int(INTERVAL / PAGE_TIME) + 2):  # past three intervals, answered all along
            await forge.request("GET", "/runners", endpoint="list_runners")

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
