"""Container start latency: the Docker provider vs a plain ``docker run``.

For N runners (default 50), interleaved so engine drift hits all alike (each
round's containers are removed, untimed, before the next):
  * provider  — ``DockerProvider.create`` (find/adopt check, create, credential
    archive upload, start, inspect) until it returns RUNNING;
  * docker run — ``docker run -d`` of the same image and command (CLI process included);
  * raw API   — create + start over the same socket with no provider logic (the
    engine's own start time);
  * raw API + archive — the same with one archive upload before start (what the
    credential file costs the engine: each archive call mounts the container).
Prints median / p95 and the ratios; ``--json FILE`` also writes them.

Needs the dockerd of .ci/services/docker.sh (env RUNNER_SCALER_TEST_DOCKER_HOST /
RUNNER_SCALER_TEST_DOCKER_IMAGE) or --host / --image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from providers.docker import DockerProvider
from providers.docker._provider import credential_tar
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_POOL,
    LABEL_RUNNER_NAME,
    CredentialFile,
    LaunchSpec,
    ProviderSettings,
)
from scaler.secrets import Secret


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(pct(values, 0.95) * 1000, 2),
        "min_ms": round(min(values) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("RUNNER_SCALER_TEST_DOCKER_HOST"))
    ap.add_argument("--image", default=os.environ.get("RUNNER_SCALER_TEST_DOCKER_IMAGE"))
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    if not args.host or not args.image or not args.host.startswith("unix://"):
        print("need --host unix:///… and --image (or the env of .ci/services/docker.sh)", file=sys.stderr)
        return 2
    cli = shutil.which("docker", path="/usr/bin") or "docker"
    controller = f"bench-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    settings = ProviderSettings(
        name="docker-bench",
        type="docker",
        controller_id=controller,
        options={"hosts": [{"name": "local", "url": args.host}]},
    )
    provider = DockerProvider(settings)
    raw = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=args.host[len("unix://") :]), base_url="http://docker"
    )
    command = ["/bin/sh", "-c", "sleep 60"]
    t_provider: list[float] = []
    t_run: list[float] = []
    t_raw: list[float] = []
    t_raw_file: list[float] = []
    tar_bytes = credential_tar([CredentialFile("/tmp/credentials", Secret("bench-secret-x"))], "/", (0, 0), [])
    plain: list[str] = []
    try:
        await provider.list()  # warm: first sync, connection
        for i in range(args.n):
            name = f"bench-p{i}-{tag}"
            spec = LaunchSpec(
                name=name,
                pool="bench",
                image=args.image,
                command=tuple(command),
                env={"RUNNER_NAME": name},
                files=(CredentialFile("/run/runner/credentials", Secret(f"bench-secret-{uuid.uuid4().hex}")),),
                labels={LABEL_CONTROLLER: controller, LABEL_POOL: "bench", LABEL_RUNNER_NAME: name},
                options={"network_mode": "none", "stop_timeout": 1},
            )
            t0 = time.perf_counter()
            await provider.create(spec)
            t_provider.append(time.perf_counter() - t0)

            rname = f"bench-r{i}-{tag}"
            t0 = time.perf_counter()
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    cli,
                    "-H",
                    args.host,
                    "run",
                    "-d",
                    "--name",
                    rname,
                    "--network",
                    "none",
                    "--stop-timeout",
                    "1",
                    "--label",
                    f"bench={controller}",
                    args.image,
                    *command,
                ],
                capture_output=True,
                text=True,
            )
            t_run.append(time.perf_counter() - t0)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            plain.append(rname)

            aname = f"bench-a{i}-{tag}"
            t0 = time.perf_counter()
            r = await raw.post(
                "/containers/create",
                params={"name": aname},
                json={
                    "Image": args.image,
                    "Cmd": command,
                    "Labels": {"bench": controller},
                    "HostConfig": {"NetworkMode": "none"},
                    "StopTimeout": 1,
                },
            )
            r.raise_for_status()
            (await raw.post(f"/containers/{aname}/start")).raise_for_status()
            t_raw.append(time.perf_counter() - t0)
            plain.append(aname)

            # the same plus one archive upload: what the credential file costs the engine
            fname = f"bench-f{i}-{tag}"
            t0 = time.perf_counter()
            r = await raw.post(
                "/containers/create",
                params={"name": fname},
                json={
                    "Image": args.image,
                    "Cmd": command,
                    "Labels": {"bench": controller},
                    "HostConfig": {"NetworkMode": "none"},
                    "StopTimeout": 1,
                },
            )
            r.raise_for_status()
            (
                await raw.put(
                    f"/containers/{fname}/archive",
                    params={"path": "/"},
                    content=tar_bytes,
                    headers={"Content-Type": "application/x-tar"},
                )
            ).raise_for_status()
            (await raw.post(f"/containers/{fname}/start")).raise_for_status()
            t_raw_file.append(time.perf_counter() - t0)
            plain.append(fname)

            # untimed: remove this round's containers so every round sees the same engine
            await provider.delete(name)
            for n in plain:
                await raw.delete(f"/containers/{n}", params={"force": "true", "v": "true"})
            plain.clear()
    finally:
        for info in await provider.list():
            await provider.delete(info.name)
        await provider.close()
        for name in plain:
            await raw.delete(f"/containers/{name}", params={"force": "true", "v": "true"})
        await raw.aclose()

    res: dict[str, Any] = {
        "n": args.n,
        "provider_create": summary(t_provider),
        "docker_run_cli": summary(t_run),
        "raw_api_create_start": summary(t_raw),
        "raw_api_create_archive_start": summary(t_raw_file),
    }
    res["ratio_median_provider_vs_docker_run"] = round(statistics.median(t_provider) / statistics.median(t_run), 3)
    res["ratio_median_provider_vs_raw_api"] = round(statistics.median(t_provider) / statistics.median(t_raw), 3)
    res["added_median_ms_vs_raw_api"] = round((statistics.median(t_provider) - statistics.median(t_raw)) * 1000, 2)
    res["added_median_ms_vs_raw_api_with_archive"] = round(
        (statistics.median(t_provider) - statistics.median(t_raw_file)) * 1000, 2
    )
    res["added_median_ms_vs_docker_run"] = round((statistics.median(t_provider) - statistics.median(t_run)) * 1000, 2)
    print(f"{'':30} {'median ms':>10} {'p95 ms':>10}")
    for key in ("provider_create", "docker_run_cli", "raw_api_create_start", "raw_api_create_archive_start"):
        print(f"{key:30} {res[key]['median_ms']:>10} {res[key]['p95_ms']:>10}")
    print(f"provider / docker run (median): {res['ratio_median_provider_vs_docker_run']}")
    print(
        f"provider / raw API   (median): {res['ratio_median_provider_vs_raw_api']}"
        f"  (+{res['added_median_ms_vs_raw_api']} ms)"
    )
    print(json.dumps(res))
    if args.json_path:
        await asyncio.to_thread(Path(args.json_path).write_text, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
