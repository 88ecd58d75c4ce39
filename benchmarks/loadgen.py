"""Load generator, in its own process: ``python -m benchmarks.loadgen``.

A raw asyncio HTTP/1.1 keep-alive client (no HTTP library on the hot path,
so the client is not the bottleneck; each request is built and signed on the
fly with a fresh delivery id). Prints one JSON document.

* ``--mode closed``: N connections send back to back for D seconds (maximum rate).
* ``--mode open``: requests are scheduled at a fixed ``--rate``; latency is
  measured from the scheduled time, so a slow server cannot hide its queueing.
* ``--mode burst``: ``--jobs`` queued deliveries spread over ``--pools`` pools,
  as fast as N connections allow, each tagged ``x-bench-job``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

from benchmarks.common import encode, signed_headers, summary, workflow_job_payload

PLACEHOLDER_ID = 777777777
ACTIONS = ("queued", "in_progress", "completed")


class Deliveries:
    """Signed ``workflow_job`` requests: each job's queued, in_progress, completed in turn."""

    def __init__(self, scheme: str, base: int, pools: int, mix: bool) -> None:
        self.scheme, self.base, self.pools, self.mix = scheme, base, pools, mix
        self.templates = {
            a: encode(
                workflow_job_payload(
                    PLACEHOLDER_ID, "acme/app", ["poolXX"], a, None if a == "queued" else "rs-p0-jrunner"
                )
            )
            for a in ACTIONS
        }

    def request(self, i: int, tag: bool = False) -> bytes:
        if self.mix:
            job, action = self.base + i // 3, ACTIONS[i % 3]
        else:
            job, action = self.base + i, "queued"
        body = (
            self.templates[action]
            .replace(str(PLACEHOLDER_ID).encode(), str(job).encode())
            .replace(b'"poolXX"', f'"pool{job % self.pools}"'.encode())
        )
        headers = signed_headers(body, self.scheme, action=action)
        if tag:
            headers["x-bench-job"] = str(job)
        head = "POST /webhooks/fake HTTP/1.1\r\nhost: 127.0.0.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(args: argparse.Namespace) -> dict[str, Any]:
    gen = Deliveries(args.scheme, args.base, args.pools, mix=args.mode != "burst")
    conns = [await asyncio.open_connection("127.0.0.1", args.port) for _ in range(args.conns)]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    counter = iter(range(10**9))
    started = time.perf_counter()
    deadline = started + args.duration

    async def closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while time.perf_counter() < deadline:
            req = gen.request(next(counter))
            t0 = time.perf_counter()
            statuses[await roundtrip(reader, writer, req)] += 1
            latencies.append(time.perf_counter() - t0)

    async def open_(w: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = w
        while True:
            at = started + i / args.rate
            if at >= deadline:
                return
            req = gen.request(i)
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            statuses[await roundtrip(reader, writer, req)] += 1
            latencies.append(time.perf_counter() - at)
            i += args.conns

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (i := next(counter)) < args.jobs:
            t0 = time.perf_counter()
            statuses[await roundtrip(reader, writer, gen.request(i, tag=True))] += 1
            latencies.append(time.perf_counter() - t0)

    if args.mode == "closed":
        await asyncio.gather(*(closed(r, w) for r, w in conns))
    elif args.mode == "open":
        await asyncio.gather(*(open_(k, r, w) for k, (r, w) in enumerate(conns)))
    else:
        await asyncio.gather(*(burst(r, w) for r, w in conns))
    elapsed = time.perf_counter() - started
    for _, w in conns:
        w.close()
    return {
        "mode": args.mode,
        "requests": sum(statuses.values()),
        "elapsed": elapsed,
        "rate": sum(statuses.values()) / elapsed,
        "statuses": {str(k): v for k, v in statuses.items()},
        "latency_ms": {k: (v * 1000 if k != "n" else v) for k, v in summary(latencies).items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["closed", "open", "burst"], default="closed")
    ap.add_argument("--scheme", default="github")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--pools", type=int, default=20)
    ap.add_argument("--base", type=int, default=1_000_000)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
