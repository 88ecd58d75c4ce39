"""Building a runner Pod: defaults, the pool's template merged over them
(ARC style), container modes and the credential Secret."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Mapping
from typing import Any

from providers.kubernetes._options import KubernetesPoolOptions
from scaler.errors import ProviderPermanentError
from scaler.provider import LABEL_CONTROLLER, LABEL_POOL, LaunchSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "runner-scaler"
ANNOTATION_BOOT_TIMEOUT = "runner-scaler.io/boot-timeout"
ANNOTATION_PREFIX = "runner-scaler.io/"
# The stamps that are also labels (the rest are annotations only: label values
# are restricted to 63 characters of [A-Za-z0-9._-]).
LABEL_STAMPS = (LABEL_CONTROLLER, LABEL_POOL)
CREDENTIALS_VOLUME = "runner-credentials"
DIND_SOCKET_VOLUME = "dind-sock"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def secret_name(pod_name: str) -> str:
    return f"{pod_name}-credentials"


def label_value_ok(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))


def merge_dict(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars in ``over`` replace ``base``'s."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_dict(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def merge_named(base: list[dict[str, Any]], over: list[dict[str, Any]], key: str = "name") -> list[dict[str, Any]]:
    """Merge two lists of named items: same name → ``over`` merged into ``base``
    (in ``base``'s position), new names appended in ``over``'s order."""
    out = [copy.deepcopy(i) for i in base]
    index = {i.get(key): n for n, i in enumerate(out)}
    for item in over:
        n = index.get(item.get(key))
        if n is None:
            index[item.get(key)] = len(out)
            out.append(copy.deepcopy(item))
        else:
            out[n] = merge_dict(out[n], item)
    return out


def _merge_container(default: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The template's container over the default, but what the runner needs wins:
    its command, our environment variables and our credential mounts."""
    merged = merge_dict(template, {k: v for k, v in default.items() if k not in ("env", "volumeMounts")})
    if not default.get("image") and template.get("image"):
        merged["image"] = template["image"]
    merged["env"] = merge_named(template.get("env") or [], default.get("env") or [])
    merged["volumeMounts"] = merge_named(
        template.get("volumeMounts") or [], default.get("volumeMounts") or [], key="mountPath"
    )
    if not merged["env"]:
        del merged["env"]
    if not merged["volumeMounts"]:
        del merged["volumeMounts"]
    return merged


def build_pod(
    launch: LaunchSpec,
    opts: KubernetesPoolOptions,
    *,
    namespace: str,
    controller_id: str,
    boot_timeout: float,
) -> dict[str, Any]:
    """The Pod manifest for one runner (a plain dict, as sent to the API)."""
    if not _DNS_SUBDOMAIN.match(launch.name) or len(launch.name) > 253 - len("-credentials"):
        raise ProviderPermanentError(f"instance name {launch.name!r} is not a valid Pod name (DNS subdomain)")
    stamps = {**launch.labels, LABEL_CONTROLLER: controller_id, LABEL_POOL: launch.pool}
    for key in LABEL_STAMPS:
        if not label_value_ok(stamps[key]):
            raise ProviderPermanentError(f"{key}={stamps[key]!r} is not a valid Kubernetes label value")
    tmeta = opts.template.get("metadata") or {}
    tspec: dict[str, Any] = copy.deepcopy(opts.template.get("spec") or {})

    labels = {**(tmeta.get("labels") or {}), MANAGED_BY: MANAGED_BY_VALUE}
    labels.update({k: stamps[k] for k in LABEL_STAMPS})
    annotations = {**(tmeta.get("annotations") or {}), **stamps, ANNOTATION_BOOT_TIMEOUT: f"{boot_timeout:g}"}

    env = [{"name": k, "value": v} for k, v in launch.env.items()]
    runner: dict[str, Any] = {"name": opts.runner_container, "image": launch.image, "env": env}
    if launch.command:
        runner["command"] = list(launch.command)
        runner["args"] = []
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if launch.files:
        items = []
        for n, f in enumerate(launch.files):
            if not f.path.startswith("/"):
                raise ProviderPermanentError(f"credential file path {f.path!r} is not absolute")
            key = f"file-{n}"
            items.append({"key": key, "path": key, "mode": opts.credential_file_mode})
            # subPath mounts one file without hiding the rest of its directory.
            mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": f.path, "subPath": key, "readOnly": True})
        volumes.append(
            {
                "name": CREDENTIALS_VOLUME,
                "secret": {
                    "secretName": secret_name(launch.name),
                    "defaultMode": opts.credential_file_mode,
                    "items": items,
                },
            }
        )
    runner["volumeMounts"] = mounts

    init_containers: list[dict[str, Any]] = []
    if opts.container_mode == "dind":
        volumes.append({"name": DIND_SOCKET_VOLUME, "emptyDir": {}})
        mounts.append({"name": DIND_SOCKET_VOLUME, "mountPath": "/var/run/docker"})
        env.append({"name": "DOCKER_HOST", "value": "unix:///var/run/docker/docker.sock"})
        # A native sidecar (init container with restartPolicy Always) so the Pod
        # completes when the runner exits (Kubernetes ≥ 1.29).
        init_containers.append(
            {
                "name": "dind",
                "image": opts.dind_image,
                "restartPolicy": "Always",
                "args": ["dockerd", "--host=unix:///var/run/docker/docker.sock"],
                "env": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": DIND_SOCKET_VOLUME, "mountPath": "/var/run/docker"}],
                "startupProbe": {
                    "exec": {"command": ["docker", "-H", "unix:///var/run/docker/docker.sock", "info"]},
                    "periodSeconds": 1,
                    "failureThreshold": 120,
                },
            }
        )

    tcontainers: list[dict[str, Any]] = tspec.pop("containers", None) or []
    tinit: list[dict[str, Any]] = tspec.pop("initContainers", None) or []
    tvolumes: list[dict[str, Any]] = tspec.pop("volumes", None) or []
    tspec.pop("restartPolicy", None)

    containers: list[dict[str, Any]] = []
    runner_merged = False
    for c in tcontainers:
        if c.get("name") == opts.runner_container:
            containers.append(_merge_container(runner, c))
            runner_merged = True
        else:
            containers.append(copy.deepcopy(c))
    if not runner_merged:
        containers.insert(0, _merge_container(runner, {}))
    else:  # the runner container first: status translation and kubectl logs default to it
        containers.sort(key=lambda c: c.get("name") != opts.runner_container)
    if not any(c.get("image") for c in containers if c.get("name") == opts.runner_container):
        raise ProviderPermanentError(f"pool {launch.pool!r}: no image for the runner container")

    spec = merge_dict({"automountServiceAccountToken": False, "enableServiceLinks": False}, tspec)
    spec["restartPolicy"] = "Never"
    spec["containers"] = containers
    all_init = merge_named(init_containers, tinit)
    if all_init:
        spec["initContainers"] = all_init
    all_volumes = merge_named(tvolumes, volumes)
    if all_volumes:
        spec["volumes"] = all_volumes
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": launch.name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def build_secret(launch: LaunchSpec, pod: Mapping[str, Any], controller_id: str) -> dict[str, Any]:
    """The credential Secret, owned by the (already created) Pod."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(launch.name),
            "namespace": meta["namespace"],
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, LABEL_CONTROLLER: controller_id, LABEL_POOL: launch.pool},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {f"file-{n}": base64.b64encode(f.content.encode()).decode() for n, f in enumerate(launch.files)},
    }
