"""The ``check`` findings of the running forges and providers, for the overview.

Probing talks to the forges and providers, so it runs only while someone
looks (a page asks; at most one probe in flight, at most every
``ui.check_interval``), each call bounded by a timeout, in the background:
a page never waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import structlog

from scaler.app import Scaler
from scaler.provider import Finding

log = structlog.get_logger("scaler.ui")
PROBE_TIMEOUT = 10.0


class Probes:
    def __init__(self, scaler: Scaler, interval: float) -> None:
        self.scaler = scaler
        self.interval = interval
        self.findings: list[Finding] = []
        self.at: float | None = None  # when the last probe finished
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def ask(self) -> None:
        """Start a probe in the background if one is due."""
        if not self.interval or self.running:
            return
        if self.at is not None and self.scaler.clock.now() - self.at < self.interval:
            return
        self._task = asyncio.get_running_loop().create_task(self._probe(), name="ui-check")

    async def _probe(self) -> None:
        scaler = self.scaler
        found: list[Finding] = []
        for name, forge in scaler.forges.items():
            found += await _bounded(f"forge {name}", forge.check())
        for name, provider in scaler.providers.items():
            pools = {p.name: dict(p.provider_options) for p in scaler.config.pools if p.provider == name}
            found += await _bounded(f"provider {name}", provider.check(pools))
        self.findings, self.at = found, scaler.clock.now()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _bounded(subject: str, call: Awaitable[list[Finding]]) -> list[Finding]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return list(await call)
    except TimeoutError:
        return [Finding("error", subject, f"probe did not answer within {PROBE_TIMEOUT:g}s")]
    except Exception as exc:
        log.warning("ui probe failed", subject=subject, error=str(exc))
        return [Finding("error", subject, f"probe failed: {exc}")]
