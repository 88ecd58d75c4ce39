"""A small async Docker Engine API client over httpx (unix socket or TCP+TLS)."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from providers.docker._options import DockerSettings, HostConfig
from scaler.errors import ProviderPermanentError, ProviderTemporaryError


class HostUnavailable(ProviderTemporaryError):
    """The engine did not answer (connection refused, timeout, socket gone)."""


class EngineError(ProviderTemporaryError):
    """The engine answered with an unexpected status; ``status`` holds it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class EngineRefused(ProviderPermanentError):
    """4xx that retrying will not fix (bad request, forbidden, image missing)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Conflict(EngineRefused):
    """409: a container with this name exists (or is being removed)."""


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500]
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])[:500]
    return str(body)[:500]


def registry_auth_header(auth: Mapping[str, Any]) -> str:
    """``X-Registry-Auth``: base64url of the auth JSON."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()


class EngineClient:
    def __init__(self, host: HostConfig, settings: DockerSettings) -> None:
        self.host = host
        self._settings = settings
        self._prefix = f"/v{settings.api_version}" if settings.api_version else ""
        timeout = httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout)
        verify: ssl.SSLContext | bool = True
        if host.socket_path is not None:
            transport = httpx.AsyncHTTPTransport(uds=host.socket_path)
        else:
            if host.tls is not None:
                ctx = ssl.create_default_context(cafile=str(host.tls.ca_file) if host.tls.ca_file else None)
                ctx.load_cert_chain(str(host.tls.cert_file), str(host.tls.key_file))
                verify = ctx
            transport = httpx.AsyncHTTPTransport(verify=verify)
        headers = {"User-Agent": "runner-scaler"}
        if host.tls is not None and host.tls.server_name:
            headers["Host"] = host.tls.server_name
        self._http = httpx.AsyncClient(transport=transport, base_url=host.base_url, timeout=timeout, headers=headers)

    async def close(self) -> None:
        await self._http.aclose()

    # -- plumbing ----------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {}
        if read_timeout is not None:
            kwargs["timeout"] = httpx.Timeout(read_timeout, connect=self._settings.connect_timeout)
        try:
            return await self._http.request(
                method,
                self._prefix + path,
                params=params,
                json=json_body,
                content=content,
                headers=headers,
                **kwargs,
            )
        except httpx.TimeoutException as exc:
            raise HostUnavailable(f"docker host {self.host.name}: {method} {path} timed out") from exc
        except (httpx.TransportError, OSError) as exc:
            raise HostUnavailable(f"docker host {self.host.name}: {exc or type(exc).__name__}") from exc

    def _fail(self, resp: httpx.Response, what: str) -> ProviderTemporaryError | ProviderPermanentError:
        msg = f"docker host {self.host.name}: {what}: {resp.status_code} {_message(resp)}"
        if resp.status_code == 409:
            return Conflict(msg, resp.status_code)
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            return EngineError(msg, resp.status_code)
        return EngineRefused(msg, resp.status_code)

    # -- system ------------------------------------------------------------------
    async def ping(self) -> str:
        resp = await self._request("GET", "/_ping", read_timeout=self._settings.connect_timeout)
        if resp.status_code != 200:
            raise self._fail(resp, "ping")
        return str(resp.headers.get("API-Version", ""))

    async def version(self) -> dict[str, Any]:
        resp = await self._request("GET", "/version")
        if resp.status_code != 200:
            raise self._fail(resp, "version")
        out: dict[str, Any] = resp.json()
        return out

    # -- containers ----------------------------------------------------------------
    async def inspect(self, name_or_id: str) -> dict[str, Any] | None:
        resp = await self._request("GET", f"/containers/{name_or_id}/json")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"inspect {name_or_id}")
        out: dict[str, Any] = resp.json()
        return out

    async def list_containers(self, labels: list[str], *, limit: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all": "1", "filters": json.dumps({"label": labels})}
        if limit is not None:
            params["limit"] = str(limit)
        resp = await self._request("GET", "/containers/json", params=params)
        if resp.status_code != 200:
            raise self._fail(resp, "list containers")
        out: list[dict[str, Any]] = resp.json()
        return out

    async def create(self, name: str, body: Mapping[str, Any]) -> str:
        resp = await self._request("POST", "/containers/create", params={"name": name}, json_body=body)
        if resp.status_code != 201:
            raise self._fail(resp, f"create {name}")
        return str(resp.json()["Id"])

    async def path_exists(self, cid: str, path: str) -> bool:
        resp = await self._request("HEAD", f"/containers/{cid}/archive", params={"path": path})
        if resp.status_code == 404:
            return False
        if resp.status_code != 200:
            raise self._fail(resp, f"stat {path}")
        return True

    async def put_archive(self, cid: str, path: str, data: bytes) -> None:
        resp = await self._request(
            "PUT",
            f"/containers/{cid}/archive",
            params={"path": path, "noOverwriteDirNonDir": "true"},
            content=data,
            headers={"Content-Type": "application/x-tar"},
        )
        if resp.status_code != 200:
            raise self._fail(resp, f"upload files to {path}")

    async def start(self, cid: str) -> None:
        resp = await self._request("POST", f"/containers/{cid}/start")
        if resp.status_code not in (204, 304):
            raise self._fail(resp, "start")

    async def remove(self, name_or_id: str) -> bool:
        """Force-remove with anonymous volumes; False when it was already gone."""
        resp = await self._request("DELETE", f"/containers/{name_or_id}", params={"force": "true", "v": "true"})
        if resp.status_code == 404:
            return False
        if resp.status_code == 409 and "already in progress" in _message(resp):
            return True
        if resp.status_code not in (200, 204):
            raise self._fail(resp, f"remove {name_or_id}")
        return True

    # -- images --------------------------------------------------------------------
    async def inspect_image(self, ref: str) -> dict[str, Any] | None:
        resp = await self._request("GET", f"/images/{ref}/json")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"inspect image {ref}")
        out: dict[str, Any] = resp.json()
        return out

    async def distribution(self, ref: str, auth: str | None) -> None:
        """Ask the registry (through the engine) whether ``ref`` is pullable."""
        headers = {"X-Registry-Auth": auth} if auth else None
        resp = await self._request("GET", f"/distribution/{ref}/json", headers=headers)
        if resp.status_code != 200:
            raise self._fail(resp, f"registry lookup of {ref}")

    async def pull(self, ref: str, auth: str | None, progress: Callable[[Mapping[str, Any]], None]) -> None:
        name, tag = split_ref(ref)
        params = {"fromImage": name, "tag": tag}
        headers = {"X-Registry-Auth": auth} if auth else {}
        timeout = httpx.Timeout(self._settings.pull_timeout, connect=self._settings.connect_timeout)
        try:
            async with self._http.stream(
                "POST", self._prefix + "/images/create", params=params, headers=headers, timeout=timeout
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise self._fail(resp, f"pull {ref}")
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue
                    if "error" in item:
                        err = str(item.get("error"))
                        msg = f"docker host {self.host.name}: pull {ref}: {err}"
                        lowered = err.lower()
                        if any(s in lowered for s in ("not found", "unauthorized", "denied", "manifest unknown")):
                            raise EngineRefused(msg, 404)
                        raise EngineError(msg, 500)
                    progress(item)
        except httpx.TimeoutException as exc:
            raise HostUnavailable(f"docker host {self.host.name}: pull {ref} timed out") from exc
        except httpx.TransportError as exc:
            raise HostUnavailable(f"docker host {self.host.name}: pull {ref}: {exc}") from exc

    # -- events --------------------------------------------------------------------
    async def events(self, filters: Mapping[str, list[str]], since: float | None) -> AsyncIterator[dict[str, Any]]:
        """The events stream (until the engine closes it or the connection drops)."""
        params: dict[str, str] = {"filters": json.dumps(dict(filters))}
        if since is not None:
            params["since"] = f"{since:.9f}"
        timeout = httpx.Timeout(None, connect=self._settings.connect_timeout)
        try:
            async with self._http.stream("GET", self._prefix + "/events", params=params, timeout=timeout) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise self._fail(resp, "events")
                async for line in resp.aiter_lines():
                    if line.strip():
                        try:
                            item = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(item, dict):
                            yield item
        except httpx.TimeoutException as exc:
            raise HostUnavailable(f"docker host {self.host.name}: events timed out") from exc
        except (httpx.TransportError, OSError) as exc:
            raise HostUnavailable(f"docker host {self.host.name}: events: {exc or type(exc).__name__}") from exc


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag][@digest]`` → (repo, tag or digest) for ``/images/create``."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"
