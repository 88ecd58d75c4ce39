"""``runner-scaler check`` tells the operator the URL and the cause of a
failure in words, names a missing Docker socket, and warns about what could
not be confirmed (Forgejo's job webhooks)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scaler.cli import main
from scaler.forges._http import describe_transport_error
from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer
from tests.forges.conftest import write


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there now
    return port


def _config(tmp: Path, kind: str, url: str, providers: list[dict[str, Any]] | None = None) -> Path:
    data = {
        "forges": [{"name": "main", "type": kind, "url": url, "scope": {"kind": "organization", "name": "acme"},
                    "token_file": str(write(tmp, "tok", ADMIN_TOKEN)),
                    "webhook_secret_files": [str(write(tmp, "sec", "secret-value-1"))], "request_timeout": "2s"}],
        "providers": providers or [{"name": "mem", "type": "memory"}],
        "pools": [{"name": "small", "forge": "main", "provider": (providers or [{"name": "mem"}])[0]["name"],
                   "labels": ["ubuntu-latest"]}],
    }
    p = tmp / "config.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("kind", ["gitea", "forgejo"])
def test_unreachable_forge_names_url_and_cause(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["check", "--config", str(_config(tmp_path, kind, url))]) == 1
    out = capsys.readouterr().out
    assert f"GET {url}/api/v1/version: connection refused" in out, out
    assert "ConnectError" not in out


def test_refused_token_names_url_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeForgeServer("gitea", "1.25.0", token="another-token-0000") as srv:
        assert main(["check", "--config", str(_config(tmp_path, "gitea", srv.url))]) == 1
    out = capsys.readouterr().out
    assert f"GET {srv.url}/api/v1/version: HTTP 401 (token is required)" in out, out


def test_missing_docker_socket_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "docker.sock"
    providers = [{"name": "docker", "type": "docker", "options": {"hosts": [{"name": "local",
                                                                               "url": f"unix://{missing}"}]}}]
    with FakeForgeServer("gitea", "1.25.0") as srv:
        main(["check", "--config", str(_config(tmp_path, "gitea", srv.url, providers))])
    out = capsys.readouterr().out
    assert f"docker socket {missing} does not exist" in out, out


@pytest.mark.parametrize(("version", "says"), [("15.0.3", "sends none"), ("17.0.0", "unconfirmed")])
def test_forgejo_job_webhooks_warned(tmp_path: Path, version: str, says: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with FakeForgeServer("forgejo", version) as srv:
        main(["check", "--config", str(_config(tmp_path, "forgejo", srv.url))])
    out = capsys.readouterr().out
    assert any(line.startswith("WARNING") and "job webhooks" in line and says in line for line in out.splitlines()), out


def test_transport_causes_in_words() -> None:
    req = httpx.Request("GET", "http://127.0.0.1:1/x")
    assert describe_transport_error(httpx.ConnectTimeout("t", request=req)) == "timed out connecting"
    assert describe_transport_error(httpx.ReadTimeout("t", request=req)) == "timed out waiting for the answer"
    err = httpx.ConnectError("[Errno -2] Name or service not known", request=req)
    assert describe_transport_error(err) == "cannot resolve the host name"
    tls = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", request=req)
    assert describe_transport_error(tls) == "TLS certificate not trusted"
