"""Kubernetes provider: a Pod per runner (``restartPolicy: Never``), its
credentials in a Secret owned by the Pod, per-pool Pod templates, host or dind
container mode, and a watch for exits.

Entry point ``kubernetes = "providers.kubernetes:KubernetesProvider"``.
``REQUIRED_PERMISSIONS`` lists the RBAC the provider needs (the Helm chart
renders its Role from it).
"""

from providers.kubernetes._client import build_api_client
from providers.kubernetes._options import KubernetesPoolOptions, KubernetesSettings
from providers.kubernetes._provider import LEADER_ELECTION_PERMISSIONS, REQUIRED_PERMISSIONS, KubernetesProvider
from providers.kubernetes._status import translate
from providers.kubernetes._template import build_pod, build_secret, merge_dict, merge_named, secret_name

__all__ = [
    "LEADER_ELECTION_PERMISSIONS",
    "REQUIRED_PERMISSIONS",
    "KubernetesPoolOptions",
    "KubernetesProvider",
    "KubernetesSettings",
    "build_api_client",
    "build_pod",
    "build_secret",
    "merge_dict",
    "merge_named",
    "secret_name",
    "translate",
]
