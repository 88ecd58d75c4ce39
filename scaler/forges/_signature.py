"""Webhook signature verification shared by the three forges.

HMAC-SHA256 of the raw body, compared in constant time against every
configured secret (several secrets allow rotation). Accepted headers:

* ``X-Hub-Signature-256: sha256=<hex>`` (all three forges);
* ``X-Gitea-Signature`` / ``X-Gogs-Signature``: bare hex (Gitea, Forgejo);
* ``X-Forgejo-Signature``: bare hex (Forgejo).

Every signature header that is present and non-empty must verify; at least
one must be present. Empty values (Gitea sends them when the hook has no
secret), malformed values and a SHA-1-only ``X-Hub-Signature`` are refused.
Hex digits are compared as bytes, so upper-case hex is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from scaler.errors import SignatureError
from scaler.secrets import Secret

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

HUB_256 = "x-hub-signature-256"
HUB_SHA1 = "x-hub-signature"
GITEA = "x-gitea-signature"
GOGS = "x-gogs-signature"
FORGEJO = "x-forgejo-signature"


def sign(secret: str | bytes, body: bytes) -> str:
    """The bare hex HMAC-SHA256 of ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _decode(header: str, value: str) -> bytes:
    raw = value.strip()
    if header == HUB_256:
        prefix, sep, rest = raw.partition("=")
        if not sep or prefix.lower() != "sha256":
            raise SignatureError(f"{header}: expected 'sha256=<hex>'")
        raw = rest
    if not _HEX64.match(raw):
        raise SignatureError(f"{header}: not a 64-digit hex HMAC-SHA256")
    return bytes.fromhex(raw)


def verify_signature(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[Secret], *, accepted: Sequence[str]
) -> None:
    """Raise :class:`SignatureError` unless ``body`` is signed with one of ``secrets``."""
    if not secrets:
        raise SignatureError("no webhook secret configured; unsigned deliveries are refused")
    present = {h: headers[h] for h in accepted if h in headers}
    given = {h: v for h, v in present.items() if v.strip()}
    if not given:
        if present:
            raise SignatureError("empty signature header (is a secret set on the forge's webhook?)")
        if headers.get(HUB_SHA1, "").strip():
            raise SignatureError("only a SHA-1 signature (X-Hub-Signature) was sent; SHA-256 is required")
        raise SignatureError("missing signature header (" + ", ".join(accepted) + ")")
    digests = [hmac.digest(s.encode(), body, hashlib.sha256) for s in secrets]
    for header, value in given.items():
        want = _decode(header, value)
        matched = False
        for digest in digests:  # no early exit: time does not reveal which secret matched
            matched |= hmac.compare_digest(want, digest)
        if not matched:
            raise SignatureError(f"{header}: signature does not match any configured secret")
