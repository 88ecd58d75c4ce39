"""Checks on rendered Kubernetes manifests, shared by the chart tests.

``strict_check`` walks an object against the models of the official
Kubernetes Python client (generated from the API's OpenAPI spec): every field
must exist in the API and have the right shape, so a typo (``securityContex``)
or a misplaced key fails here instead of at ``kubectl apply`` time.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client.models as k8s_models

# Kinds rendered by the chart → the client's model class.
_MODELS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
}
# Custom resources: only their envelope can be checked here.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject")}

# The client spells containers "List[X]" / "Dict[str, X]" (older: "list[X]" / "dict(str, X)").
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^[Dd]ict[\[(]str, (.+)[\])]$")


def model_for(doc: dict[str, Any]) -> str | None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CUSTOM_KINDS:
        return None
    assert key in _MODELS, f"unexpected kind rendered: {key}"
    return _MODELS[key]  # type: ignore[index]


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def metadata_problems(doc: dict[str, Any]) -> list[str]:
    """Names and label values the API server would refuse."""
    meta = doc.get("metadata") or {}
    where = f"{doc.get('kind')}/{meta.get('name')}"
    problems = []
    if not _DNS_SUBDOMAIN.match(str(meta.get("name", ""))):
        problems.append(f"{where}: name is not a DNS-1123 subdomain")
    if doc.get("kind") in ("Service", "Deployment", "ConfigMap", "Secret") and len(str(meta.get("name"))) > 63:
        problems.append(f"{where}: name longer than 63")
    labels = dict(meta.get("labels") or {})
    if doc.get("kind") == "Deployment":
        labels.update(doc["spec"]["template"]["metadata"].get("labels") or {})
    for key, value in labels.items():
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            problems.append(f"{where}: label {key}={value!r} is not a valid label value")
    return problems


def strict_check(doc: dict[str, Any]) -> list[str]:
    """Problems of one manifest (empty when every field is known and well typed)."""
    problems: list[str] = metadata_problems(doc)
    name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    model = model_for(doc)
    if model is None:
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            problems.append(f"{name}: metadata.name missing")
        return problems
    _check(doc, model, name, problems)
    return problems


def _check(value: Any, typ: str, path: str, problems: list[str]) -> None:
    if value is None:
        return
    if m := _LIST.match(typ):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, m.group(1), f"{path}[{i}]", problems)
        return
    if m := _DICT.match(typ):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for k, item in value.items():
            inner = m.group(1)
            # Quantities (resources) are strings in the client but numbers are legal YAML for them.
            if inner == "str" and isinstance(item, int | float) and not isinstance(item, bool):
                continue
            _check(item, inner, f"{path}.{k}", problems)
        return
    # bytes (Secret data) travel as base64 text.
    simple = {
        "str": str,
        "bool": bool,
        "float": (int, float),
        "datetime": str,
        "date": str,
        "bytes": str,
        "bytearray": str,
    }
    if typ == "object":
        return
    if typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
        return
    if typ in simple:
        if not isinstance(value, simple[typ]) or (typ != "bool" and isinstance(value, bool)):
            problems.append(f"{path}: expected {typ}, got {value!r}")
        return
    cls = getattr(k8s_models, typ, None)
    if cls is None:
        problems.append(f"{path}: unknown model {typ}")
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object ({typ}), got {type(value).__name__}")
        return
    fields = {json_key: py_name for py_name, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{path}.{key}: not a field of {typ}")
            continue
        _check(item, cls.openapi_types[fields[key]], f"{path}.{key}", problems)


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return out


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def security_problems(where: str, spec: dict[str, Any]) -> list[str]:
    """Every container: non-root, read-only root, no escalation, ALL dropped,
    RuntimeDefault seccomp (container or pod level), requests and a memory limit."""
    problems = []
    pod_sc = spec.get("securityContext") or {}
    for c in containers(spec):
        p = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{p}: runAsNonRoot is not true")
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if uid == 0:
            problems.append(f"{p}: runs as uid 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{p}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{p}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{p}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{p}: capabilities.drop lacks ALL")
        if caps.get("add"):
            problems.append(f"{p}: adds capabilities {caps['add']}")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{p}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        res = c.get("resources") or {}
        if not res.get("requests"):
            problems.append(f"{p}: no resource requests")
        if not (res.get("limits") or {}).get("memory"):
            problems.append(f"{p}: no memory limit")
    return problems
