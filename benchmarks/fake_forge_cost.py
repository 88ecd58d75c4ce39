"""What the HTTP fake forge costs per request, so the end-to-end benchmarks
measure the scaler and not the fake (``python -m benchmarks.fake_forge_cost``).

The fake (``python -m scaler.testing.forge_harness``, its own process, with
its delivery loop) goes through one job life cycle per runner, phase by
phase, driven over keep-alive connections (``RawHTTP``); a sink in this
process takes the webhooks. For each phase: the forge process's CPU (from
``/proc``) per request, webhooks delivered included. Run at two sizes: a
request whose cost grows with the number of jobs or runners (a scan, a sort)
shows as a ratio well above 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.e2e_env import _wait_for, cpu_seconds
from scaler.testing.rawhttp import RawHTTP

RPC = "/api/actions/runner.v1.RunnerService/"
ADMIN = {"authorization": "token fake-admin-token-0123456789", "content-type": "application/json"}
JSON = {"content-type": "application/json", "connect-protocol-version": "1"}


class Sink:
    """Answers every webhook 202 and counts them."""

    def __init__(self) -> None:
        self.received = 0
        self.target = 0
        self.reached = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = (ln.partition(b":") for ln in head.split(b"\r\n"))
                length = next((int(v) for k, _, v in fields if k.lower() == b"content-length"), 0)
                await reader.readexactly(length)
                self.received += 1
                if self.received >= self.target:
                    self.reached.set()
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()  # cancelled at shutdown too: 3.11 logs a handler's CancelledError as an error


async def _all(http: RawHTTP, calls: list[tuple[str, str, bytes, dict[str, str]]]) -> list[tuple[int, bytes]]:
    return await asyncio.gather(*(http.request(m, p, b, h) for m, p, b, h in calls))


def run_size(n: int, kind: str, profile: str | None = None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rs-fakecost-"))
    port_file = tmp / "port"
    proc = subprocess.Popen([sys.executable, "-m", "scaler.testing.forge_harness", "--kind", kind, "--port-file",
                             str(port_file)], stdout=subprocess.DEVNULL)
    spy = None
    if profile:
        exe = str(Path(sys.executable).with_name("py-spy"))
        spy = subprocess.Popen([exe, "record", "--pid", str(proc.pid), "--rate", "250", "--format", "raw",
                                "--output", profile, "--nonblocking"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        port = int(_wait_for(lambda: port_file.read_text() if port_file.exists() else None, 20))
        out: dict[str, Any] = {"n": n, "phases": asyncio.run(_drive(port, proc.pid, n))}
        if spy is not None and profile:
            from benchmarks.profile_report import summarise

            spy.send_signal(2)
            spy.wait(30)
            out["profile"] = summarise(profile)
        return out
    finally:
        proc.terminate()
        proc.wait(10)


async def _drive(port: int, pid: int, n: int) -> dict[str, Any]:
    sink = Sink()
    sink_port = await sink.start()
    http = RawHTTP("127.0.0.1", port, 16)
    sub = json.dumps({"url": f"http://127.0.0.1:{sink_port}/hook", "secret": "s"}).encode()
    await http.request("POST", "/_harness/subscribe", sub, ADMIN)
    phases: dict[str, Any] = {}

    async def phase(name: str, calls: list[tuple[str, str, bytes, dict[str, str]]], hooks: int = 0) -> list[Any]:
        sink.target = sink.received + hooks
        sink.reached.clear()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        out = await _all(http, calls)
        if hooks:
            await sink.reached.wait()
        cpu = cpu_seconds(pid) - cpu0
        phases[name] = {"requests": len(calls), "webhooks": hooks, "wall_s": round(time.monotonic() - t0, 3),
                        "cpu_us_per_request": round(cpu / max(1, len(calls)) * 1e6, 1)}
        return out

    per = 500
    batches = [json.dumps({"repo": "acme/app", "labels": ["ubuntu-latest"], "n": min(per, n - i)}).encode()
               for i in range(0, n, per)]
    await phase("queue (per job)", [("POST", "/_harness/jobs", b, ADMIN) for b in batches], hooks=n)
    phases["queue (per job)"]["cpu_us_per_request"] = round(
        phases["queue (per job)"]["cpu_us_per_request"] * len(batches) / n, 1)
    _, raw = await http.request("GET", "/api/v1/orgs/acme/actions/runners/registration-token", b"", ADMIN)
    reg = json.loads(raw)["token"]
    regs = [("POST", RPC + "Register", json.dumps({"name": f"rs-linux-{i}", "token": reg, "ephemeral": True,
                                                   "labels": ["ubuntu-latest"]}).encode(), JSON)
            for i in range(n)]
    runners = [json.loads(b)["runner"] for _, b in await phase("Register", regs)]
    auth = [{**JSON, "x-runner-uuid": r["uuid"], "x-runner-token": r["token"]} for r in runners]
    body = json.dumps({"version": "sim", "labels": ["ubuntu-latest"]}).encode()
    await phase("Declare", [("POST", RPC + "Declare", body, a) for a in auth])
    pages = range(1, n // 50 + 2)
    await phase("list runners (page of 50)", [("GET", f"/api/v1/orgs/acme/actions/runners?page={p}&limit=50",
                                               b"", ADMIN) for p in pages])
    await phase("list queued jobs (page of 50)", [("GET", f"/api/v1/orgs/acme/actions/jobs?status=queued&page={p}"
                                                   "&limit=50", b"", ADMIN) for p in pages])
    fetched = await phase("FetchTask (takes a job)", [("POST", RPC + "FetchTask", b"{}", a) for a in auth], hooks=n)
    tasks = [json.loads(b)["task"]["id"] for _, b in fetched]
    await phase("FetchTask (busy, nothing)", [("POST", RPC + "FetchTask", b"{}", a) for a in auth])
    done = [("POST", RPC + "UpdateTask", json.dumps({"state": {"id": t, "result": "RESULT_SUCCESS"}}).encode(), a)
            for t, a in zip(tasks, auth, strict=True)]
    await phase("UpdateTask (job done, runner dropped)", done, hooks=n)
    await http.close()
    sink.server.close()
    return phases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="500,5000")
    ap.add_argument("--kind", default="gitea", choices=["gitea"])
    ap.add_argument("--profile", help="py-spy raw output of the forge process (largest size)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    results = [run_size(n, args.kind, args.profile if n == sizes[-1] else None) for n in sizes]
    small, big = results[0]["phases"], results[-1]["phases"]
    for name in small:
        a, b = small[name]["cpu_us_per_request"], big[name]["cpu_us_per_request"]
        print(f"{name:40s} {a:9.1f} µs  {b:9.1f} µs  ratio {b / max(a, 0.1):5.2f}", file=sys.stderr)
    print(json.dumps({"sizes": sizes, "results": results}))


if __name__ == "__main__":
    main()
