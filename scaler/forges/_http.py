"""The HTTP client the forge adapters share.

* Retries (tenacity) only idempotent requests (GET, HEAD, DELETE) on 429,
  5xx and connection errors, honouring ``Retry-After``. A POST — above all a
  credential mint — is never retried: a second mint makes a second runner.
* Every answer is counted in ``runner_scaler_forge_requests_total`` and
  rate-limit headers update ``runner_scaler_forge_rate_limit_remaining``.
* Errors become the core's :class:`ForgeTemporaryError` /
  :class:`ForgePermanentError`; messages never carry credentials.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from scaler.errors import ForgePermanentError, ForgeTemporaryError
from scaler.forges._metrics import FORGE_RATE_LIMIT_REMAINING, FORGE_REQUESTS

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
AuthHook = Callable[[], Awaitable[Mapping[str, str]]]


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class RateLimit:
    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # epoch seconds
    used: int | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class ForgeHTTP:
    def __init__(
        self,
        *,
        forge: str,
        base_url: str,
        timeout: float,
        auth: AuthHook | None = None,
        headers: Mapping[str, str] | None = None,
        attempts: int = 3,
        max_retry_wait: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        on_unauthorized: Callable[[], None] | None = None,
    ) -> None:
        self.forge = forge
        self._on_unauthorized = on_unauthorized
        self._auth = auth
        self._attempts = max(1, attempts)
        self._max_wait = max_retry_wait
        self._sleep = sleep
        self.now = now
        self.rate = RateLimit()
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_wait)
        return float(min(0.5 * 2 ** (state.attempt_number - 1), self._max_wait))

    async def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Container[int] = (200, 201, 204),
        auth: bool = True,
    ) -> httpx.Response:
        """One call; retried only when ``method`` is idempotent."""
        method = method.upper()
        if method not in IDEMPOTENT:
            try:
                return await self._once(method, url, endpoint, params, json, headers, ok, auth)
            except _Retryable as exc:
                raise ForgeTemporaryError(str(exc), retry_after=exc.retry_after) from None
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, url, endpoint, params, json, headers, ok, auth)
        except _Retryable as exc:
            raise ForgeTemporaryError(str(exc), retry_after=exc.retry_after) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        url: str,
        endpoint: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        ok: Container[int],
        auth: bool,
    ) -> httpx.Response:
        hdrs: dict[str, str] = {}
        if auth and self._auth is not None:
            hdrs.update(await self._auth())
        hdrs.update(headers or {})
        try:
            resp = await self.client.request(method, url, params=params, json=json, headers=hdrs)
        except httpx.TransportError as exc:
            FORGE_REQUESTS.labels(self.forge, endpoint, "error").inc()
            raise _Retryable(f"{self.forge}: {method} {endpoint}: {type(exc).__name__}", None) from None
        FORGE_REQUESTS.labels(self.forge, endpoint, str(resp.status_code)).inc()
        self._track_rate(resp)
        status = resp.status_code
        if status in ok:
            return resp
        retry_after = parse_retry_after(resp.headers.get("retry-after"), self.now())
        limited = status == 429 or (
            status == 403 and (retry_after is not None or resp.headers.get("x-ratelimit-remaining") == "0")
        )
        if limited and retry_after is None and self.rate.reset is not None:
            retry_after = max(0.0, self.rate.reset - self.now())
        message = f"{self.forge}: {method} {endpoint}: HTTP {status}{_detail(resp)}"
        if status == 401 and auth and self._on_unauthorized is not None:
            self._on_unauthorized()  # e.g. drop a cached App token so the next call mints a fresh one
        if limited or status >= 500:
            if retry_after is not None and retry_after > self._max_wait:
                raise ForgeTemporaryError(message, retry_after=retry_after)
            raise _Retryable(message, retry_after)
        raise ForgePermanentError(message)

    def _track_rate(self, resp: httpx.Response) -> None:
        remaining = _int(resp.headers.get("x-ratelimit-remaining"))
        if remaining is None:
            return
        reset = _int(resp.headers.get("x-ratelimit-reset"))
        self.rate = RateLimit(
            limit=_int(resp.headers.get("x-ratelimit-limit")),
            remaining=remaining,
            reset=float(reset) if reset is not None else None,
            used=_int(resp.headers.get("x-ratelimit-used")),
        )
        FORGE_RATE_LIMIT_REMAINING.labels(self.forge).set(remaining)


def _detail(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, Mapping):
        msg = data.get("message") or data.get("msg")
        if isinstance(msg, str) and msg:
            return f" ({msg[:200]})"
    return ""
