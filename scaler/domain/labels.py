"""Label matching and repository allow-lists."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from scaler.domain.repository import is_repository_name

# GitHub gives every self-hosted runner these labels implicitly; a job that
# asks for them must match a pool that did not list them.
GITHUB_IMPLICIT = frozenset({"self-hosted", "linux", "x64"})


def label_name(label: str) -> str:
    """The matchable name of a runner label, lower-cased.

    Gitea/Forgejo labels carry a scheme (``ubuntu-latest:docker://node:20``,
    ``native:host``); jobs name only the part before the first ``:``.
    """
    return label.split(":", 1)[0].strip().lower()


def labels_match(job_labels: Iterable[str], pool_labels: Iterable[str], *, implicit: Iterable[str] = ()) -> bool:
    """Whether every ``runs-on`` label of a job is served by a pool."""
    offered = {label_name(x) for x in pool_labels} | {x.lower() for x in implicit}
    wanted = {label_name(x) for x in job_labels}
    return bool(wanted) and wanted <= offered


@dataclass(frozen=True, slots=True)
class RepositoryAllowList:
    """Which repositories may use a pool: ``org/repo``, ``org/*`` or ``*``."""

    patterns: tuple[str, ...]

    def allows(self, repository: str) -> bool:
        # Only a well-formed repository can be admitted: ``acme/*`` must not
        # admit ``acme/..``, ``acme/x\ny`` or ``acme/x/y``. Owner and name are
        # matched separately (fnmatch's ``*`` also matches ``/``).
        if not is_repository_name(repository):
            return False
        owner, _, name = repository.lower().partition("/")
        for p in self.patterns:
            if p == "*":
                return True
            p_owner, _, p_name = p.lower().partition("/")
            if fnmatch.fnmatchcase(owner, p_owner) and fnmatch.fnmatchcase(name, p_name):
                return True
        return False
