"""Building a ``kubernetes.client.ApiClient`` from in-cluster config, a kubeconfig or a context."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def build_api_client(
    *,
    in_cluster: bool | None = None,
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    api_url: str | None = None,
    pool_size: int = 16,
) -> Any:
    """``in_cluster=None`` means: in-cluster when ``KUBERNETES_SERVICE_HOST`` is set
    and no kubeconfig was named, else the kubeconfig (``$KUBECONFIG`` / ``~/.kube/config``)."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if api_url is not None and in_cluster is None and kubeconfig is None and context is None:
        cfg.host = api_url
    else:
        use_cluster = (
            in_cluster
            if in_cluster is not None
            else (bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and kubeconfig is None and context is None)
        )
        if use_cluster:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig is not None else None,
                context=context,
                client_configuration=cfg,
            )
        if api_url is not None:
            cfg.host = api_url
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)
