"""Host provider start and teardown latency, against what it is made of.

For N runners (default 20), interleaved so machine drift hits all alike:
  * create   — ``HostProvider.create`` until it returns (UID lease, record,
    work dir, credential file, cgroups, plan, supervisor started and bwrap's
    sandbox PID 1 reported);
  * delete   — ``HostProvider.delete`` of that running sandbox (kill the tree,
    verify no process of the UID, cgroups, work dir, lease, state);
  * bare bwrap — the same bwrap command line running ``/bin/true`` to its end
    (namespaces + mounts + setpriv, no provider logic);
  * python   — the supervisor's interpreter start-up alone
    (``python -c 'import providers.host._supervisor'``).
Prints median / p95 and the ratios; ``--json FILE`` also writes them.

Needs root and bubblewrap (``.ci/services/bubblewrap.sh``). State goes to a
temporary directory, removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.docker_start import summary
from providers.host import HostProvider
from providers.host._state import load_record
from scaler.provider import LABEL_CONTROLLER, LABEL_POOL, CredentialFile, LaunchSpec, ProviderSettings
from scaler.secrets import Secret

LIMITS = {"memory": "512MiB", "tasks": 256, "cpu": 1.0}


def _spec(controller: str, i: int) -> LaunchSpec:
    return LaunchSpec(
        name=f"{controller}-r{i}", pool="bench", image="", command=("/bin/sh", "-c", "sleep 60"),
        files=(CredentialFile("/data/.runner", Secret(secrets.token_hex(16))),),
        labels={LABEL_CONTROLLER: controller, LABEL_POOL: "bench"}, options={"limits": LIMITS}, max_lifetime=600,
    )


def _bare_argv(plan_path: Path) -> list[str]:
    """The provider's own bwrap argv for this instance, running /bin/true instead."""
    argv: list[str] = json.loads(plan_path.read_text())["argv"]
    cut = argv.index("--json-status-fd")
    tail = argv[cut + 3 :]  # after "--json-status-fd N --"
    return [*argv[:cut], "--", *tail[: tail.index("env")], "/bin/true"]


def _run(argv: list[str]) -> None:
    """Blocking on purpose: the timed step is the process, nothing else runs."""
    subprocess.run(argv, check=True, capture_output=True)


async def run(n: int) -> dict[str, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="rs-host-bench-"))
    controller = f"bench-{secrets.token_hex(3)}"
    options = {"mode": "bubblewrap", "state_dir": str(root / "state"), "work_root": str(root / "work"),
               "uid_range": {"first": 0x70300000, "count": 4096}}
    provider = HostProvider(ProviderSettings("host-bench", "host", controller, options))
    times: dict[str, list[float]] = {"create": [], "delete": [], "bare_bwrap": [], "python": []}
    try:
        for i in range(n):
            spec = _spec(controller, i)
            t = time.perf_counter()
            await provider.create(spec)
            times["create"].append(time.perf_counter() - t)
            bare = _bare_argv(provider.layout.plan(spec.name))
            assert load_record(provider.layout, spec.name).uid is not None
            t = time.perf_counter()  # beside the running sandbox, over the same sources
            _run(bare)
            times["bare_bwrap"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await provider.delete(spec.name)
            times["delete"].append(time.perf_counter() - t)
            t = time.perf_counter()
            _run([sys.executable, "-c", "import providers.host._supervisor"])
            times["python"].append(time.perf_counter() - t)
    finally:
        for info in await provider.list():
            await provider.delete(info.name)
        shutil.rmtree(root, ignore_errors=True)
    return {k: summary(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    out = asyncio.run(run(args.n))
    for key, s in out.items():
        print(f"{key:11} median {s['median_ms']:8.1f} ms   p95 {s['p95_ms']:8.1f} ms")
    base = out["bare_bwrap"]["median_ms"] + out["python"]["median_ms"]
    print(f"create / (bare bwrap + python start-up) = {out['create']['median_ms'] / base:.2f}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
