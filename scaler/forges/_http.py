"""The HTTP client the forge adapters share.

* Retries (tenacity) only idempotent requests (GET, HEAD, DELETE) on 429,
  5xx and connection errors, honouring ``Retry-After``. A POST — above all a
  credential mint — is never retried: a second mint makes a second runner.
* Every answer is counted in ``runner_scaler_forge_requests_total`` and
  rate-limit headers update ``runner_scaler_forge_rate_limit_remaining``.
* Errors become the core's :class:`ForgeTemporaryError` /
  :class:`ForgePermanentError`; messages never carry credentials. A POST
  that may have reached the forge without an answer coming back (a read
  timeout, a dropped connection) is :class:`ForgeOutcomeUnknown`.
* Every request takes a slot of the forge's :class:`FairLimiter` first
  (``concurrency``, the connection pool's size too): waiting happens there,
  fairly between kinds of work, never inside the pool.
* The exchange itself is aiohttp's (``send``): httpx cost ~1.1 ms of CPU per
  call (some 2,500 Python calls through httpx, httpcore, h11 and anyio), aiohttp
  ~0.25 ms — under a burst, forge calls were half the scaler's CPU. Answers
  are handed on as ``httpx.Response`` and failures as httpx's transport
  errors, so the adapters read one kind of answer and error.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from yarl import URL

from scaler import progress
from scaler.errors import ForgeOutcomeUnknown, ForgePermanentError, ForgeTemporaryError
from scaler.forges._limit import FairLimiter
from scaler.forges._metrics import FORGE_RATE_LIMIT_REMAINING, FORGE_REQUESTS

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
# Transport errors after which the request cannot have reached the forge.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
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
        on_unauthorized: Callable[[], None] | None = None,
        concurrency: int = 16,
    ) -> None:
        self.forge = forge
        self.limiter = FairLimiter(concurrency, forge)
        self._on_unauthorized = on_unauthorized
        self._auth = auth
        self._attempts = max(1, attempts)
        self._max_wait = max_retry_wait
        self._sleep = sleep
        self.now = now
        self.rate = RateLimit()
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._headers = dict(headers or {})
        # One TLS context for every connection: building one loads the CA
        # bundle (~50 ms); httpx's honours SSL_CERT_FILE / SSL_CERT_DIR.
        self._tls = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None  # made in the running loop, on first use
        self._proxy = _env_proxy(self.base_url)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # As many connections as limiter slots: a call holding a slot never
            # waits for one. No cookies; bodies left encoded for httpx.Response
            # to decode. Not trust_env: it reads ~/.netrc in a thread on every
            # request (the proxy is read from the environment once instead).
            connector = aiohttp.TCPConnector(limit=self.limiter.limit, limit_per_host=0, ssl=self._tls)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url_for(self, url: str) -> str:
        """``url`` below the base URL (its path kept, as httpx's ``base_url``), or as it is when absolute."""
        return url if url.startswith(("http://", "https://")) else self.base_url + "/" + url.lstrip("/")

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP exchange within the forge's limit (no retries, no error mapping)."""
        full = self.url_for(url)
        if params:
            full += ("&" if "?" in full else "?") + urlencode(
                {k: _query_value(v) for k, v in params.items()}, doseq=True
            )
        hdrs = dict(headers or {})
        body = None
        if json is not None:
            body = orjson.dumps(json)
            hdrs.setdefault("content-type", "application/json")
        async with self.limiter.slot():
            try:
                async with self._client().request(
                    method, full, data=body, headers=hdrs, allow_redirects=False, proxy=self._proxy
                ) as resp:
                    content = await resp.read()
                    status, raw_headers = resp.status, resp.raw_headers
            except aiohttp.ClientError as exc:
                raise _transport_error(exc, method, full) from exc
            except TimeoutError as exc:
                raise httpx.ReadTimeout(f"{method} {full}: timed out", request=httpx.Request(method, full)) from exc
            finally:
                progress.mark()  # an answer, or an error: the forge is being talked to
        # No httpx.Request: parsing the URL again costs more than the rest of
        # the answer; an error message names the URL from ``url_for``.
        return httpx.Response(status, headers=list(raw_headers), content=content)

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
            resp = await self.send(method, url, params=params, json=json, headers=hdrs)
        except httpx.TransportError as exc:
            FORGE_REQUESTS.labels(self.forge, endpoint, "error").inc()
            where = _where(exc, self.url_for(url))
            message = f"{self.forge}: {method} {where}: {describe_transport_error(exc)}"
            if method not in IDEMPOTENT and not isinstance(exc, NOT_SENT):
                raise ForgeOutcomeUnknown(message) from None
            raise _Retryable(message, None) from None
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
        message = f"{self.forge}: {method} {_plain(httpx.URL(self.url_for(url)))}: HTTP {status}{_detail(resp)}"
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


def _plain(url: httpx.URL) -> str:
    """A URL for a message: no query (paging noise), no user info."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def _where(exc: httpx.TransportError, url: str) -> str:
    try:
        return _plain(exc.request.url)
    except RuntimeError:  # no request attached
        return _plain(httpx.URL(url))


def _env_proxy(base_url: str) -> str | None:
    """The proxy HTTPS_PROXY / HTTP_PROXY (less NO_PROXY) name for the forge, as httpx read them."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None
    if auth is not None:
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return str(proxy)


def _query_value(value: Any) -> Any:
    # As httpx writes them: booleans lower-case, None empty.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def _transport_error(exc: aiohttp.ClientError, method: str, url: str) -> httpx.TransportError:
    """aiohttp's failure as the httpx error the adapters (and the mint's
    "could it have reached the forge?") understand."""
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout  # never sent
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError  # never sent
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.InvalidURL):
        kind = httpx.UnsupportedProtocol
    else:
        kind = httpx.ReadError  # a connection that broke under a sent request
    return kind(f"{method} {url}: {exc}", request=httpx.Request(method, url))


# What the operator should read for the errors httpx raises ("ConnectError" says little).
_CAUSES = (
    ("connection refused", "connection refused"),
    ("name or service not known", "cannot resolve the host name"),
    ("nodename nor servname", "cannot resolve the host name"),
    ("temporary failure in name resolution", "cannot resolve the host name (DNS)"),
    ("no address associated", "cannot resolve the host name"),
    ("network is unreachable", "network unreachable"),
    ("no route to host", "no route to host"),
    ("certificate verify failed", "TLS certificate not trusted"),
    ("wrong version number", "TLS handshake failed (is it plain HTTP?)"),
    ("connection reset", "connection reset by the server"),
)


def describe_transport_error(exc: httpx.TransportError) -> str:
    """The cause of a failed request in words: ``connection refused``,
    ``timed out connecting (10s)``, ``TLS certificate not trusted``, …"""
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.ReadTimeout):
        return "timed out waiting for the answer"
    if isinstance(exc, httpx.WriteTimeout):
        return "timed out sending the request"
    if isinstance(exc, httpx.PoolTimeout):
        return "timed out waiting for a free connection (too many requests in flight)"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the server broke the HTTP exchange ({str(exc)[:120] or 'no detail'})"
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "cannot resolve the host name"
        if isinstance(e, ssl.SSLCertVerificationError):
            return "TLS certificate not trusted"
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
    text = " ".join(str(e) for e in chain).lower()
    for needle, cause in _CAUSES:
        if needle in text:
            return cause
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail[:160]}" if detail else type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 8:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


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
