"""Who may see ``/ui``, and the headers every UI response carries.

``ui.enabled``: ``auto`` serves loopback clients only (a browser on the host,
``kubectl port-forward``), ``true`` every client, ``false`` nobody. With
``ui.auth`` every request must also carry the basic credentials or the bearer
token, compared in constant time. Every response gets a strict Content
Security Policy: scripts and styles only from ``/ui/static``, nothing inline.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scaler.config import UIConfig
from scaler.secrets import Secret

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_REALM = 'realm="runner-scaler"'


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


class Credentials:
    """The expected ``Authorization`` header, checked in constant time."""

    def __init__(self, kind: str, secret: Secret, username: str | None = None) -> None:
        self.kind = kind
        self._secret = secret.encode()
        self._user = (username or "").encode()

    def challenge(self) -> str:
        return f'Basic {_REALM}, charset="UTF-8"' if self.kind == "basic" else f"Bearer {_REALM}"

    def allows(self, header: str | None) -> bool:
        scheme, _, value = (header or "").strip().partition(" ")
        value = value.strip()
        if self.kind == "bearer":
            # compare_digest on bytes: no early exit on the first differing byte.
            return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), self._secret)
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._secret)
        return bool(sep) and user_ok and password_ok


def credentials(ui: UIConfig) -> Credentials | None:
    if ui.auth is None:
        return None
    return Credentials(ui.auth.type, ui.auth.secret(), ui.auth.username)


class Gate:
    """ASGI middleware in front of every ``/ui`` route."""

    def __init__(self, app: ASGIApp, ui: UIConfig, creds: Credentials | None) -> None:
        self.app = app
        self.ui = ui
        self.creds = creds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Pages are live state: never cached. Static files revalidate (ETag).
        cache = b"no-cache" if scope["path"].startswith("/ui/static/") else b"no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS, (b"cache-control", cache)]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("the UI is read-only\n", 405, headers={"allow": "GET, HEAD"})
        if self.ui.enabled is False:
            return PlainTextResponse("the UI is off (ui.enabled: false)\n", 404)
        client = scope.get("client")
        if self.ui.enabled == "auto" and not is_loopback(client[0] if client else None):
            return PlainTextResponse(
                "the UI is served to loopback clients only; to serve it to others set ui.enabled: true (and ui.auth)\n",
                403,
            )
        if self.creds is not None and not self.creds.allows(Headers(scope=scope).get("authorization")):
            return PlainTextResponse(
                "authentication required\n", 401, headers={"www-authenticate": self.creds.challenge()}
            )
        return None
