"""Burst of N libvirt instances: provider.create → domain running, beside a
plain ``virsh create`` of the same domain XML (same overlay + seed volumes).

Needs the service from .ci/services/libvirt.sh (its RUNNER_SCALER_TEST_LIBVIRT_*
variables). Prints a table and one JSON document (also written to --out).

    python benchmarks/libvirt_start.py [--burst 10] [--out libvirt_start.json]

The provider figure covers everything the provider does per instance (capacity
placement, overlay volume, seed ISO built and uploaded, domain XML rendered,
``createXML``); the core's own webhook → create latency is measured by the
core's benchmarks and is orders of magnitude smaller.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt

from providers.libvirt import LibvirtPoolOptions, LibvirtProvider
from providers.libvirt.domainxml import DomainPlan, render_domain
from providers.libvirt.provider import (
    OVERLAY_SUFFIX,
    SEED_SUFFIX,
    _delete_vol,
    _overlay_xml,
    _raw_volume_xml,
    _upload,
)
from providers.libvirt.seed import build_seed
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_POOL,
    CredentialFile,
    LaunchSpec,
    ProviderSettings,
)
from scaler.secrets import Secret

CONTROLLER = "rs-bench"


def env(name: str) -> str:
    value = os.environ.get(f"RUNNER_SCALER_TEST_LIBVIRT_{name}")
    if not value:
        sys.exit(f"RUNNER_SCALER_TEST_LIBVIRT_{name} is not set: source .ci/services/libvirt.sh; libvirt_start")
    return value


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def pool_options() -> dict[str, object]:
    return {
        "base_image": env("BASE"),
        "vcpus": 1,
        "memory_mib": 256,
        "domain_type": "qemu",
        "kernel": env("KERNEL"),
        "initrd": env("INITRD"),
        "cmdline": "console=ttyS0 panic=-1 quiet",
    }


def spec(name: str) -> LaunchSpec:
    return LaunchSpec(
        name=name,
        pool="bench",
        image=env("BASE"),
        command=("sleep", "60"),
        files=(CredentialFile("/etc/runner/cred", Secret(f"bench-credential-{name}")),),
        labels={LABEL_CONTROLLER: CONTROLLER, LABEL_POOL: "bench"},
        options=pool_options(),
    )


async def provider_burst(n: int) -> list[float]:
    settings = ProviderSettings(
        "bench",
        "libvirt",
        CONTROLLER,
        {"hosts": [{"uri": env("URI"), "max_vcpus": 64}], "storage_pool": env("POOL"), "max_concurrency": n},
    )
    p = LibvirtProvider(settings)
    names = [f"bench-p-{i}" for i in range(n)]
    try:
        await p.list()  # connect first (as a running scaler would be)
        t0 = time.perf_counter()

        async def one(name: str) -> float:
            await p.create(spec(name))
            return time.perf_counter() - t0

        return list(await asyncio.gather(*(one(n_) for n_ in names)))
    finally:
        for name in names:
            await p.delete(name)
        await p.close()


def virsh_burst(n: int) -> list[float]:
    uri, pool_name = env("URI"), env("POOL")
    conn = libvirt.open(uri)
    pool = conn.storagePoolLookupByName(pool_name)
    base = pool.storageVolLookupByName(env("BASE"))
    opts = LibvirtPoolOptions.model_validate(pool_options())
    names = [f"bench-v-{i}" for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="rs-bench-"))
    files = []
    try:
        for name in names:  # untimed: the same volumes the provider makes
            s = spec(name)
            pool.createXML(_overlay_xml(name + OVERLAY_SUFFIX, base, opts), 0)
            data = build_seed(name, s.command, s.env, s.files, dict(s.labels))
            _upload(conn, pool.createXML(_raw_volume_xml(name + SEED_SUFFIX, len(data)), 0), data)
            plan = DomainPlan(name, pool_name, name + OVERLAY_SUFFIX, name + SEED_SUFFIX, dict(s.labels), time.time())
            f = tmp / f"{name}.xml"
            f.write_text(render_domain(plan, opts))
            files.append(f)
        t0 = time.perf_counter()

        def run(f: Path) -> float:
            subprocess.run(["virsh", "-q", "-c", uri, "create", str(f)], check=True, capture_output=True)
            return time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=n) as ex:
            return list(ex.map(run, files))
    finally:
        for name in names:
            with contextlib.suppress(libvirt.libvirtError):
                conn.lookupByName(name).destroy()
            _delete_vol(pool, name + OVERLAY_SUFFIX)
            _delete_vol(pool, name + SEED_SUFFIX)
        conn.close()
        for f in files:
            f.unlink(missing_ok=True)
        tmp.rmdir()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--burst", type=int, default=10)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    virsh = virsh_burst(args.burst)
    prov = asyncio.run(provider_burst(args.burst))
    result = {
        "benchmark": "libvirt_start",
        "burst": args.burst,
        "domain_type": "qemu (TCG)",
        "provider_create_to_running_s": {"median": statistics.median(prov), "p95": pct(prov, 95), "max": max(prov)},
        "virsh_create_s": {"median": statistics.median(virsh), "p95": pct(virsh, 95), "max": max(virsh)},
    }
    result["ratio_median"] = result["provider_create_to_running_s"]["median"] / result["virsh_create_s"]["median"]
    result["ratio_p95"] = result["provider_create_to_running_s"]["p95"] / result["virsh_create_s"]["p95"]
    print(f"burst of {args.burst}: burst start → domain running")
    for label, key in (("provider.create", "provider_create_to_running_s"), ("virsh create", "virsh_create_s")):
        r = result[key]
        print(f"  {label:16} median {r['median'] * 1000:8.1f} ms   p95 {r['p95'] * 1000:8.1f} ms")
    print(f"  ratio            median {result['ratio_median']:.2f}x   p95 {result['ratio_p95']:.2f}x")
    doc = json.dumps(result, indent=2)
    print(doc)
    if args.out:
        Path(args.out).write_text(doc + "\n")


if __name__ == "__main__":
    main()
