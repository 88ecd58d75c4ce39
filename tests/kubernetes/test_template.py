"""Pod building: defaults, ARC-style template merge, container modes, the credential Secret."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError

from providers.kubernetes import KubernetesPoolOptions, build_pod, merge_dict, merge_named
from providers.kubernetes._template import CREDENTIALS_VOLUME, MANAGED_BY
from scaler.errors import ProviderPermanentError
from scaler.provider import LABEL_CONTROLLER, LABEL_POOL, LABEL_RUNNER_ID, LABEL_RUNNER_NAME
from tests.kubernetes.conftest import launch

pytestmark = pytest.mark.kubernetes


def pod_for(template: dict[str, Any] | None = None, **opts: Any) -> dict[str, Any]:
    options = KubernetesPoolOptions.model_validate({"template": template or {}, **opts})
    return build_pod(launch("r-1"), options, namespace="ci", controller_id="rs", boot_timeout=300)


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def test_defaults() -> None:
    pod = pod_for()
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "r-1" and meta["namespace"] == "ci"
    assert meta["labels"] == {MANAGED_BY: "runner-scaler", LABEL_CONTROLLER: "rs", LABEL_POOL: "small"}
    # Values labels cannot hold live in annotations.
    assert meta["annotations"][LABEL_RUNNER_NAME] == "r-1 (runner)"
    assert meta["annotations"][LABEL_RUNNER_ID] == "4242"
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    runner = container(pod, "runner")
    assert runner["image"] == "registry.local/runner:1"
    assert runner["command"] == ["sh", "-c", "sleep 30"]
    assert {"name": "RUNNER_NAME", "value": "r-1"} in runner["env"]
    (mount,) = runner["volumeMounts"]
    assert mount == {"name": CREDENTIALS_VOLUME, "mountPath": "/data/.runner", "subPath": "file-0", "readOnly": True}
    (vol,) = spec["volumes"]
    assert vol["secret"]["secretName"] == "r-1-credentials"
    assert vol["secret"]["defaultMode"] == 0o400
    assert vol["secret"]["items"] == [{"key": "file-0", "path": "file-0", "mode": 0o400}]


def test_template_spec_fields_override_defaults() -> None:
    template = {
        "metadata": {"labels": {"team": "ci", LABEL_CONTROLLER: "evil"}, "annotations": {"a": "b"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/arch": "amd64"},
            "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
            "serviceAccountName": "runner",
            "automountServiceAccountToken": True,
            "securityContext": {"runAsUser": 1001, "fsGroup": 1001},
            "imagePullSecrets": [{"name": "regcred"}],
            "priorityClassName": "ci-low",
            "runtimeClassName": "gvisor",
        },
    }
    pod = pod_for(template)
    spec = pod["spec"]
    assert pod["metadata"]["labels"]["team"] == "ci"
    assert pod["metadata"]["labels"][LABEL_CONTROLLER] == "rs"  # ours win
    assert pod["metadata"]["annotations"]["a"] == "b"
    for key, value in template["spec"].items():  # type: ignore[union-attr]
        assert spec[key] == value, key
    assert spec["restartPolicy"] == "Never"


def test_template_runner_container_is_merged() -> None:
    template = {
        "spec": {
            "containers": [
                {"name": "sidecar", "image": "envoy:1"},
                {
                    "name": "runner",
                    "image": "ignored:0",
                    "command": ["not-the-runner"],
                    "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                    "env": [{"name": "EXTRA", "value": "1"}, {"name": "RUNNER_NAME", "value": "overridden?"}],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                    "securityContext": {"readOnlyRootFilesystem": True},
                },
            ],
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [{"name": "prep", "image": "busybox"}],
        }
    }
    pod = pod_for(template)
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["runner", "sidecar"]
    runner = container(pod, "runner")
    assert runner["image"] == "registry.local/runner:1"  # the pool's image wins
    assert runner["command"] == ["sh", "-c", "sleep 30"]  # the runner command wins
    assert runner["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert runner["securityContext"] == {"readOnlyRootFilesystem": True}
    env = {e["name"]: e["value"] for e in runner["env"]}
    assert env == {"EXTRA": "1", "RUNNER_NAME": "r-1"}  # ours win for our variables
    assert {m["mountPath"] for m in runner["volumeMounts"]} == {"/work", "/data/.runner"}
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"work", CREDENTIALS_VOLUME}
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["prep"]


def test_template_image_used_when_launch_has_none() -> None:
    opts = KubernetesPoolOptions(template={"spec": {"containers": [{"name": "runner", "image": "from-template:1"}]}})
    spec = dataclasses.replace(launch("r-2"), image="")
    pod = build_pod(spec, opts, namespace="ci", controller_id="rs", boot_timeout=300)
    assert container(pod, "runner")["image"] == "from-template:1"


def test_dind_needs_explicit_opt_in() -> None:
    with pytest.raises(ValidationError, match="allow_privileged_dind"):
        KubernetesPoolOptions(container_mode="dind")


def test_dind_mode_adds_privileged_native_sidecar() -> None:
    pod = pod_for(container_mode="dind", allow_privileged_dind=True)
    (dind,) = pod["spec"]["initContainers"]
    assert dind["name"] == "dind" and dind["image"] == "docker:dind"
    assert dind["restartPolicy"] == "Always"  # native sidecar: the Pod completes with the runner
    assert dind["securityContext"] == {"privileged": True}
    runner = container(pod, "runner")
    assert {"name": "DOCKER_HOST", "value": "unix:///var/run/docker/docker.sock"} in runner["env"]
    assert "dind-sock" in {m["name"] for m in runner["volumeMounts"]}
    assert "securityContext" not in runner  # only the sidecar is privileged


def test_host_mode_has_no_sidecar() -> None:
    pod = pod_for()
    assert "initContainers" not in pod["spec"]
    assert all(not (c.get("securityContext") or {}).get("privileged") for c in pod["spec"]["containers"])


def test_template_validation() -> None:
    with pytest.raises(ValidationError, match="restartPolicy"):
        KubernetesPoolOptions(template={"spec": {"restartPolicy": "Always"}})
    with pytest.raises(ValidationError, match="metadata and spec"):
        KubernetesPoolOptions(template={"kind": "Pod"})
    with pytest.raises(ValidationError, match="each with a name"):
        KubernetesPoolOptions(template={"spec": {"containers": [{"image": "x"}]}})
    with pytest.raises(ValidationError):
        KubernetesPoolOptions.model_validate({"unknown": 1})


def test_invalid_names_and_label_values_are_permanent() -> None:
    opts = KubernetesPoolOptions()
    with pytest.raises(ProviderPermanentError, match="Pod name"):
        build_pod(launch("Bad_Name"), opts, namespace="ci", controller_id="rs", boot_timeout=1)
    with pytest.raises(ProviderPermanentError, match="label value"):
        build_pod(launch("ok", pool="x" * 70), opts, namespace="ci", controller_id="rs", boot_timeout=1)


def test_merge_helpers() -> None:
    assert merge_dict({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]}) == {"a": {"b": 3, "c": 2}, "l": [2]}
    assert merge_named([{"name": "x", "v": 1}], [{"name": "x", "w": 2}, {"name": "y"}]) == [
        {"name": "x", "v": 1, "w": 2},
        {"name": "y"},
    ]


def test_option_parsing() -> None:
    from providers.kubernetes import KubernetesSettings

    assert KubernetesPoolOptions(credential_file_mode="0440").credential_file_mode == 0o440  # type: ignore[arg-type]
    assert KubernetesPoolOptions(boot_timeout="90s").boot_timeout == 90  # type: ignore[arg-type]
    settings = KubernetesSettings(boot_timeout="10m", extra_namespaces=("ci",))  # type: ignore[arg-type]
    assert settings.boot_timeout == 600 and settings.namespaces == ("default", "ci")
    with pytest.raises(ValidationError, match="DNS label"):
        KubernetesSettings(namespace="Not_OK")
    with pytest.raises(ValidationError, match="octal"):
        KubernetesPoolOptions(credential_file_mode="rw")  # type: ignore[arg-type]
