"""6. The operator UI at benchmark 4's sizes: what a refresh costs, and what open tabs cost everyone else.

``python -m benchmarks.ui`` (``--quick``: short phases, a smoke test). A server
subprocess (CPU 0) builds a busy scaler through its normal paths: every job a
signed delivery through the real webhook route, instances created by the
reconciler on the in-memory provider, runners listed by resync; 10,000 queued
jobs, 5,000 instances over 200 pools (all at ``max``), 1,000 jobs started on
runners and half of those completed, 100 deliveries no pool serves, an hour of
chart samples. Then, in that process:

- **refresh**: each page's live fragment (what an open tab fetches every
  ``ui.refresh``) through the ASGI app, timed from request to last byte.
  ``changed``: a new delivery was applied (a reconcile pass) before each
  refresh, so nothing computed for the last one is valid; ``same``: two
  refreshes with no change in between, the second timed.
- **stall**: the app is served by uvicorn with every loop running (the
  lifespan rebuilds the store from the forge and provider) while deliveries
  keep coming (``--churn`` per second: new jobs queued, queued jobs cancelled).
  This process (CPU 1) probes ``/healthz`` every 20 ms over a keep-alive
  connection while N tabs, each on its own connection, fetch a page every
  second, staggered; the probe's latency is the stall the tabs cause.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import SECRET, config_data, free_port, job_labels, pinned, python_module, summary
from benchmarks.loadgen import roundtrip

TARGET_REFRESH_MS = 10.0
SIZES = {"jobs": 10_000, "instances": 5_000, "pools": 200}
PAGES = {
    "overview": "/ui/",
    "instances": "/ui/instances",
    "instances, one pool": "/ui/instances?pool=p7",
    "jobs": "/ui/jobs",
    "jobs, waiting": "/ui/jobs?state=waiting",
    "jobs, one pool": "/ui/jobs?pool=p7",
    "jobs, completed": "/ui/jobs?state=completed",
}
TABS = {
    "0 tabs": [],
    "1 tab (jobs)": ["/ui/jobs"],
    "5 tabs (jobs)": ["/ui/jobs"] * 5,
    "5 tabs (one of each page)": ["/ui/", "/ui/instances", "/ui/jobs", "/ui/jobs?state=waiting", "/ui/jobs?pool=p7"],
}
HX = {"hx-request": "true"}


# --- the server process ---------------------------------------------------------


class Busy:
    """A scaler made busy through its own routes and loops (no loop running
    yet: passes are driven here until the state is built)."""

    def __init__(self, jobs: int, instances: int, pools: int) -> None:
        import httpx

        from scaler import logging as slog
        from scaler.app import Scaler
        from scaler.config import parse_config
        from scaler.provider import ProviderSettings
        from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
        from scaler.web import create_app

        slog.configure("info", "json", stream=open(os.devnull, "w"), cache=True)  # noqa: SIM115
        data = config_data(
            pools=pools, pool_max=instances // pools, max_instances=instances * 2, concurrency=64, mint_concurrency=64
        )
        data["ui"] = {"enabled": True}
        config = parse_config(data)
        self.state = FakeForgeState(secret=SECRET, auto_online=True)
        p = config.providers[0]
        self.provider = MemoryProvider(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
        forge = FakeForge(config.forges[0], self.state)
        self.scaler = Scaler(config, forges={"fake": forge}, providers={"mem": self.provider})
        self.app = create_app(self.scaler)
        self.ui = self.app.state.ui
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(self.app), base_url="http://127.0.0.1")
        self.jobs, self.instances, self.pools = jobs, instances, pools
        self.queued: list[int] = []

    async def deliver(self, headers: dict[str, str], body: bytes) -> None:
        resp = await self.client.post("/webhooks/fake", content=body, headers=headers)
        if resp.status_code not in (200, 202):
            raise RuntimeError(f"delivery refused: {resp.status_code} {resp.text}")

    async def queue(self, i: int, labels: list[str] | None = None) -> int:
        labels = labels or job_labels(i % self.pools)
        job, headers, body = self.state.queue_job(f"acme/repo-{i % 50}", labels)
        await self.deliver(headers, body)
        return job

    async def build(self) -> None:
        scaler = self.scaler
        await scaler.rebuild()
        for i in range(self.jobs):
            self.queued.append(await self.queue(i))
        for i in range(100):
            await self.queue(i, ["gpu-nowhere"])  # no pool has these labels
        await scaler.settle(rounds=30)
        await scaler.resync.run_once()  # runners online: instances idle
        await scaler.settle()
        await self.run_some(self.instances // 5)
        await self.fill_history()
        self.ui.compile()  # as its start does (the lifespan does not run in process)

    async def run_some(self, n: int) -> None:
        """Start ``n`` queued jobs on idle runners of their pools, complete half."""
        idle: dict[str, list[str]] = {}
        for inst in self.scaler.store.instances.values():
            if str(inst.state) == "idle":
                idle.setdefault(inst.pool, []).append(inst.name)
        started = []
        for job_id in list(self.queued):
            job = self.state.jobs[job_id]
            runners = idle.get("p" + job.labels[0].removeprefix("pool"))
            if runners and len(started) < n:
                await self.deliver(*self.state.start_job(job_id, runners.pop()))
                started.append(job_id)
                self.queued.remove(job_id)
        await self.scaler.settle()
        for job_id in started[::2]:
            await self.deliver(*self.state.complete_job(job_id))
        await self.scaler.settle()

    async def fill_history(self) -> None:
        """An hour of samples, then one taken (and the charts drawn) as the sampler does."""
        from scaler.web.ui.history import Sample, take_sample

        now, history = time.time(), self.ui.history
        steps = int(history.window // history.every)
        rng = random.Random(7)
        for k in range(self.pools):
            for s in range(steps + 1):
                at = now - (steps - s) * history.every
                started = rng.uniform(0, 600) if s % 3 == 0 else None
                history.add(f"p{k}", Sample(at, rng.randrange(0, 80), rng.uniform(0, 900), started))
        await take_sample(self.scaler, history, self.ui.indexes, self.ui._spark)

    async def churn_once(self, n: int) -> None:
        """One delivery: a new job queued (even ``n``) or the oldest cancelled."""
        if n % 2 == 0 or not self.queued:
            self.queued.append(await self.queue(n))
        else:
            await self.deliver(*self.state.complete_job(self.queued.pop(0)))


class Ticker:
    """The longest the event loop went without running this task: what any
    other request (``/healthz``, a webhook) would have waited."""

    def __init__(self) -> None:
        self.longest, self._last = 0.0, time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self._lap()

    def _lap(self) -> None:
        now = time.perf_counter()
        self.longest, self._last = max(self.longest, now - self._last), now

    def __enter__(self) -> Ticker:
        self.longest, self._last = 0.0, time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._lap()  # the span since the last tick counts too (the caller may never have yielded)
        self._task.cancel()


async def timed(busy: Busy, url: str) -> tuple[float, float, int]:
    """(ms from request to last byte, ms the loop was held at most meanwhile, bytes)."""
    with Ticker() as ticker:
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        resp = await busy.client.get(url, headers=HX)
        took = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"{url}: {resp.status_code}")
    return took, ticker.longest * 1000, len(resp.content)


async def refresh_costs(busy: Busy, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = 0
    pages = {**PAGES, "one job's story": f"/ui/jobs/fake/{busy.queued[len(busy.queued) // 2]}"}
    for name, url in pages.items():
        changed, held, same, size = [], [], [], 0
        for _ in range(rounds):
            await busy.churn_once(n)
            n += 1
            await busy.scaler.step_reconcile()
            took, stall, _ = await timed(busy, url)
            changed.append(took)
            held.append(stall)
            took, stall, size = await timed(busy, url)
            same.append(took)
        out[name] = {"changed_ms": summary(changed), "held_ms": summary(held), "same_ms": summary(same), "bytes": size}
    return out


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    busy = Busy(args.jobs, args.instances, args.pools)
    t0 = time.perf_counter()
    await busy.build()
    store = busy.scaler.store
    built = {
        "build_s": round(time.perf_counter() - t0, 1),
        "queued": len(store.queued_seen),
        "in_progress": len(store.in_progress),
        "jobs_known": len(store.jobs),
        "instances": len(store.instances),
        "stories": len(busy.scaler.journal or ()),
    }
    costs = await refresh_costs(busy, args.rounds)
    print(json.dumps({"built": built, "refresh": costs}), flush=True)
    config = uvicorn.Config(busy.app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    print("READY", flush=True)
    n = 0
    while not task.done():
        await busy.churn_once(n)
        n += 1
        await asyncio.sleep(1 / args.churn)


# --- the client (this process) ----------------------------------------------------


def _get(path: str, hx: bool = False) -> bytes:
    extra = "hx-request: true\r\n" if hx else ""
    return f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}\r\n".encode()


async def tab(port: int, path: str, until: float, offset: float, took: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(offset)
    try:
        while time.monotonic() < until:
            t0 = time.monotonic()
            if await roundtrip(reader, writer, _get(path, hx=True)) != 200:
                raise RuntimeError(f"tab {path} failed")
            took.append((time.monotonic() - t0) * 1000)
            await asyncio.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
    finally:
        writer.close()


def merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: summary([v for r in runs for v in r[key]]) for key in ("healthz_ms", "refresh_ms")}


async def phase(port: int, pages: list[str], seconds: float) -> dict[str, Any]:
    until = time.monotonic() + seconds
    took: list[float] = []
    tabs = [asyncio.create_task(tab(port, p, until, i / max(1, len(pages)), took)) for i, p in enumerate(pages)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    probe: list[float] = []
    while time.monotonic() < until:
        t0 = time.monotonic()
        if await roundtrip(reader, writer, _get("/healthz")) != 200:
            raise RuntimeError("/healthz failed")
        probe.append((time.monotonic() - t0) * 1000)
        await asyncio.sleep(max(0.0, t0 + 0.02 - time.monotonic()))
    writer.close()
    await asyncio.gather(*tabs)
    return {"healthz_ms": probe, "refresh_ms": took}


def run(quick: bool = False, churn: float = 10.0) -> dict[str, Any]:
    port = free_port()
    rounds, seconds, cycles = (3, 3.0, 1) if quick else (15, 8.0, 3)
    args = ["--serve", "--port", str(port), "--rounds", str(rounds), "--churn", str(churn)]
    proc = subprocess.Popen(pinned(python_module("benchmarks.ui", *args), 0), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        result = json.loads(proc.stdout.readline())
        if "READY" not in proc.stdout.readline():
            raise RuntimeError("server did not start")
        os.sched_setaffinity(0, {1} & os.sched_getaffinity(0) or os.sched_getaffinity(0))
        time.sleep(2.0)  # the lifespan's rebuild
        # The phases in turn, ``cycles`` times, so they share the machine's (and the core's) noise.
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in TABS}
        for _ in range(cycles):
            for name, pages in TABS.items():
                runs[name].append(asyncio.run(phase(port, pages, seconds)))
        result["stall"] = {name: merged(r) for name, r in runs.items()}
    finally:
        proc.terminate()  # our own child, by PID
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result["sizes"] = SIZES
    result["churn_per_s"] = churn
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        "| page (live fragment) | refresh, store changed: p50 / max | loop held at most: p50 / max | same | bytes |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["refresh"].items():
        c, h, s = r["changed_ms"], r["held_ms"], r["same_ms"]
        lines.append(
            f"| {name} | {c['p50']:.1f} / {c['max']:.1f} ms | {h['p50']:.1f} / {h['max']:.1f} ms "
            f"| {s['p50']:.1f} ms | {r['bytes']:,} |"
        )
    lines += ["", "| open tabs | /healthz p50 / p99 / max | tab refresh p50 / p99 |", "|---|---|---|"]
    for name, r in result["stall"].items():
        h, t = r["healthz_ms"], r["refresh_ms"]
        tabs = f"{t['p50']:.1f} / {t['p99']:.1f} ms" if t["n"] else "–"
        lines.append(f"| {name} | {h['p50']:.2f} / {h['p99']:.2f} / {h['max']:.1f} ms | {tabs} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true", help="(internal) the server process")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--churn", type=float, default=10.0, help="deliveries per second while serving")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ap.add_argument("--jobs", type=int, default=SIZES["jobs"])
    ap.add_argument("--instances", type=int, default=SIZES["instances"])
    ap.add_argument("--pools", type=int, default=SIZES["pools"])
    args = ap.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
        sys.exit(0)
    result = run(args.quick, args.churn)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
