"""Webhook signature checks, for every header scheme of every forge."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from scaler.errors import SignatureError
from scaler.forges._signature import verify_signature
from scaler.forges.forgejo import ForgejoForge
from scaler.forges.gitea import GiteaForge
from scaler.forges.github import GitHubForge
from scaler.secrets import Secret
from tests.forges.conftest import OLD_SECRET, SECRET, forge_config

BODY = b'{"action":"queued","workflow_job":{"id":1}}'


def hexsig(secret: str, body: bytes = BODY) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture(params=["gitea", "forgejo", "github"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> GiteaForge | ForgejoForge | GitHubForge:
    kind = request.param
    cls = {"gitea": GiteaForge, "forgejo": ForgejoForge, "github": GitHubForge}[kind]
    return cls(forge_config(tmp_path, kind, "http://127.0.0.1:9"))


def test_hub_sha256_accepted_everywhere(adapter: GiteaForge) -> None:
    adapter.verify({"x-hub-signature-256": "sha256=" + hexsig(SECRET)}, BODY)


def test_rotated_secret_accepted(adapter: GiteaForge) -> None:
    adapter.verify({"x-hub-signature-256": "sha256=" + hexsig(OLD_SECRET)}, BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-hub-signature-256": ""},
        {"x-hub-signature-256": "sha256="},
        {"x-hub-signature-256": "sha256=" + hexsig("wrong-secret")},
        {"x-hub-signature-256": "sha256=" + hexsig(SECRET)[:-2]},
        {"x-hub-signature-256": hexsig(SECRET)},  # no sha256= prefix
        {"x-hub-signature-256": "sha1=" + hexsig(SECRET)},
        {"x-hub-signature-256": "sha256=" + "zz" * 32},
        {"x-hub-signature": "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()},
    ],
    ids=["missing", "empty", "empty-hex", "wrong", "truncated", "no-prefix", "sha1-prefix", "non-hex", "sha1-only"],
)
def test_refused(adapter: GiteaForge, headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        adapter.verify(headers, BODY)


def test_other_case_hex_is_the_same_digest(adapter: GiteaForge) -> None:
    adapter.verify({"x-hub-signature-256": "sha256=" + hexsig(SECRET).upper()}, BODY)
    adapter.verify({"x-hub-signature-256": "SHA256=" + hexsig(SECRET)}, BODY)


def test_body_tampered(adapter: GiteaForge) -> None:
    with pytest.raises(SignatureError):
        adapter.verify({"x-hub-signature-256": "sha256=" + hexsig(SECRET)}, BODY + b" ")


@pytest.mark.parametrize("kind", ["gitea", "forgejo"])
def test_gitea_bare_hex_headers(tmp_path: Path, kind: str) -> None:
    cls = GiteaForge if kind == "gitea" else ForgejoForge
    a = cls(forge_config(tmp_path, kind, "http://127.0.0.1:9"))
    a.verify({"x-gitea-signature": hexsig(SECRET)}, BODY)
    a.verify({"x-gogs-signature": hexsig(OLD_SECRET)}, BODY)
    # Gitea without a secret on the hook sends empty values: refused.
    with pytest.raises(SignatureError, match="empty"):
        a.verify({"x-gitea-signature": "", "x-hub-signature-256": "", "x-hub-signature": ""}, BODY)
    # every present signature must verify
    with pytest.raises(SignatureError):
        a.verify({"x-gitea-signature": hexsig(SECRET), "x-hub-signature-256": "sha256=" + hexsig("x")}, BODY)
    with pytest.raises(SignatureError):
        a.verify({"x-gitea-signature": "sha256=" + hexsig(SECRET)}, BODY)


def test_forgejo_header(tmp_path: Path) -> None:
    a = ForgejoForge(forge_config(tmp_path, "forgejo", "http://127.0.0.1:9"))
    a.verify({"x-forgejo-signature": hexsig(SECRET)}, BODY)
    with pytest.raises(SignatureError):
        a.verify({"x-forgejo-signature": hexsig("nope")}, BODY)


def test_github_ignores_gitea_header(tmp_path: Path) -> None:
    a = GitHubForge(forge_config(tmp_path, "github", "http://127.0.0.1:9"))
    with pytest.raises(SignatureError, match="missing"):
        a.verify({"x-gitea-signature": hexsig(SECRET)}, BODY)


def test_no_secret_configured_refuses() -> None:
    with pytest.raises(SignatureError):
        verify_signature({"x-hub-signature-256": "sha256=" + hexsig(SECRET)}, BODY, [],
                         accepted=("x-hub-signature-256",))


def test_several_secrets() -> None:
    secrets = [Secret("aaaaaaaa1"), Secret("bbbbbbbb2"), Secret("cccccccc3")]
    for s in secrets:
        verify_signature({"x-hub-signature-256": "sha256=" + hexsig(s.reveal())}, BODY, secrets,
                         accepted=("x-hub-signature-256",))
