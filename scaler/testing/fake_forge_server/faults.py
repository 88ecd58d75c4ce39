"""Injected faults: ``fail_next(method, path_regex, status, retry_after=…,
times=…, delay=…)`` answers 429/5xx (with ``Retry-After``) or stalls first
(a timeout for a client with a short one)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.testing.fake_forge_server._base import ForgeBase


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    retry_after: float | None = None
    delay: float = 0.0
    times: int = 1


class FaultMixin(ForgeBase):
    faults: list[Fault]

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        retry_after: float | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        self.faults.append(Fault(method.upper(), re.compile(path), status, retry_after, delay, times))

    async def _fault(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        for f in self.faults:
            if f.times > 0 and f.method in (request.method, "*") and f.path.search(request.url.path):
                f.times -= 1
                if f.delay:
                    await asyncio.sleep(f.delay)
                headers = {"retry-after": str(int(f.retry_after))} if f.retry_after is not None else {}
                return JSONResponse({"message": "injected fault"}, status_code=f.status, headers=headers)
        return None


__all__ = ["Fault", "FaultMixin"]
