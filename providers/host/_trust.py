"""Which pools a host provider accepts: trusted repositories only.

A job on this provider runs on the scaler's own host, beside its other
runners' caches and whatever the operator shares with it. So a pool on it
must name the repositories it trusts:

* ``*`` (also the default when ``repositories`` is left out) is refused:
  every repository of the forge, present and future, could run code here;
* ``owner/*`` (or any other pattern in the name) is refused unless the pool
  sets ``provider_options.allow_owner_wildcards: true``. It admits
  repositories that do not exist yet: whoever may create a repository under
  that owner (often every member of an organisation) could run code on the
  host. Acceptable only where creating repositories is as restricted as
  pushing to the trusted ones; a pattern in the owner part never is;
* labels asking for a container (``name:docker://image``) are refused: a
  host pool's runner runs its jobs on the host (``native:host``, or no
  scheme on GitHub);
* a forge that hands instances a reusable registration token
  (``insecure_pass_registration_token``) or a shared cache secret is refused:
  nothing reusable may be inside the sandbox;
* the forge's own secret files must be hidden from the sandbox.

A trusted repository's pull requests from forks still run workflow code:
the forge must require approval for them (see the README).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from providers.host._options import HostPoolOptions, under

_GLOB = set("*?[]")


def validate_pool(pool: Mapping[str, Any], forge: Mapping[str, Any]) -> list[str]:
    """Problems (``key: reason``, relative to the pool) that keep a pool off a host provider."""
    try:
        opts = HostPoolOptions.model_validate(dict(pool.get("provider_options") or {}))
    except ValidationError:
        return []  # reported by the options model already, with its paths
    return [
        *_repositories(list(pool.get("repositories") or []), opts),
        *_labels(list(pool.get("labels") or [])),
        *_forge(forge, opts),
        *(["image: a host pool runs no image; remove it"] if pool.get("image") else []),
    ]


def _repositories(repos: list[str], opts: HostPoolOptions) -> list[str]:
    if not repos:
        return ["repositories: a pool on a host provider must list the repositories it trusts (owner/repo)"]
    out = []
    for i, repo in enumerate(repos):
        key = f"repositories[{i}]"
        owner, _, name = repo.partition("/")
        if repo == "*":
            out.append(
                f"{key}: '*' (also the default when repositories is omitted) admits every repository, and a "
                "pool on a host provider runs jobs on this host: list the trusted repositories as owner/repo"
            )
        elif _GLOB & set(owner):
            out.append(f"{key}: {repo!r} has a pattern in the owner; a host pool names its owners exactly")
        elif _GLOB & set(name) and not opts.allow_owner_wildcards:
            out.append(
                f"{key}: {repo!r} admits repositories of {owner} that do not exist yet (whoever may create one "
                "could run code on this host); list them as owner/repo, or set "
                "provider_options.allow_owner_wildcards: true if creating repositories there is restricted"
            )
    return out


def _labels(labels: list[str]) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        _, _, scheme = label.partition(":")
        if scheme.lower().startswith("docker://"):
            out.append(
                f"labels[{i}]: {label!r} asks the runner for a container, but a host pool runs jobs on the host; "
                "use a host label (e.g. 'native:host')"
            )
    return out


def forge_secret_files(forge: Mapping[str, Any]) -> list[str]:
    files = [forge.get("token_file"), *(forge.get("webhook_secret_files") or [])]
    app = forge.get("github_app") or {}
    files.append(app.get("private_key_file"))
    files.append((forge.get("options") or {}).get("cache_secret_file"))
    return [str(f) for f in files if f]


def _forge(forge: Mapping[str, Any], opts: HostPoolOptions) -> list[str]:
    out = []
    name = forge.get("name")
    if forge.get("insecure_pass_registration_token"):
        out.append(
            f"forge: forge {name!r} passes a reusable registration token into instances "
            "(insecure_pass_registration_token); a host pool takes per-runner credentials only"
        )
    if (forge.get("options") or {}).get("cache_secret_file"):
        out.append(
            f"forge: forge {name!r} puts its shared cache secret (options.cache_secret_file) into the runner's "
            "config, readable by the job; a host pool takes per-runner credentials only"
        )
    for path in forge_secret_files(forge):
        # the file as named and where it really is must both be hidden
        seen_as = {os.path.normpath(path), os.path.realpath(path)}
        if not all(any(under(p, h) for h in opts.hidden()) for p in seen_as):
            out.append(
                f"provider_options.inaccessible_paths: the forge's secret file {path} would not be hidden from the "
                "sandbox; list it (or its directory)"
            )
    return out
