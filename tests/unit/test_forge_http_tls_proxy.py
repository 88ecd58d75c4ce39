"""Forge calls through a private CA and through a proxy, over real loopback sockets.

The chart's ``forgeCA`` sets ``SSL_CERT_FILE`` and its ``proxy`` block sets
``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``; these tests hold the client
(aiohttp under ``ForgeHTTP``) to both.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from scaler.errors import ForgeTemporaryError
from scaler.forges._http import ForgeHTTP


def _app(seen: list[str]) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path_qs} host={request.host}")
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def _serve(app: web.Application, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_forge(ca: trustme.CA) -> AsyncIterator[tuple[int, list[str]]]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    seen: list[str] = []
    runner, port = await _serve(_app(seen), tls)
    yield port, seen
    await runner.cleanup()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def test_private_ca_from_ssl_cert_file_is_trusted(
    https_forge: tuple[int, list[str]], ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forge whose certificate a CA in SSL_CERT_FILE signed answers over TLS."""
    port, seen = https_forge
    bundle = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    http = ForgeHTTP(forge="f", base_url=f"https://127.0.0.1:{port}/api/v1", timeout=5)
    try:
        resp = await http.request("GET", "/version", endpoint="version")
    finally:
        await http.aclose()
    assert resp.json() == {"ok": True, "path": "/api/v1/version"}
    assert seen == [f"GET /api/v1/version host=127.0.0.1:{port}"]


async def test_untrusted_certificate_is_refused_and_named(
    https_forge: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the private CA the call fails, saying the certificate is not trusted, and sends nothing."""
    port, seen = https_forge
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    http = ForgeHTTP(forge="f", base_url=f"https://127.0.0.1:{port}", timeout=5, attempts=1)
    try:
        with pytest.raises(ForgeTemporaryError, match="TLS certificate not trusted"):
            await http.request("GET", "/version", endpoint="version")
    finally:
        await http.aclose()
    assert seen == []


async def test_http_proxy_from_the_environment_carries_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set, the request goes to the proxy in absolute form, not to the forge's host."""
    raw: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        raw.append(head.decode().split("\r\n")[0])
        body = b'{"via": "proxy"}'
        head_out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        writer.write(head_out + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # forge.invalid never resolves (RFC 2606): only the proxy on loopback can answer.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    http = ForgeHTTP(forge="f", base_url="http://forge.invalid/api/v1", timeout=5, attempts=1)
    try:
        resp = await http.request("GET", "/runners", endpoint="runners", params={"page": 2})
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()
    assert resp.json() == {"via": "proxy"}
    assert raw == ["GET http://forge.invalid/api/v1/runners?page=2 HTTP/1.1"]


async def test_no_proxy_bypasses_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forge host listed in NO_PROXY is called directly even with HTTP_PROXY set."""
    seen: list[str] = []
    runner, port = await _serve(_app(seen))
    # The proxy points at a closed port: reaching it would fail the call.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    http = ForgeHTTP(forge="f", base_url=f"http://127.0.0.1:{port}", timeout=5, attempts=1)
    try:
        resp = await http.request("GET", "/x", endpoint="x")
    finally:
        await http.aclose()
        await runner.cleanup()
    assert resp.json()["path"] == "/x"
    assert seen == [f"GET /x host=127.0.0.1:{port}"]
