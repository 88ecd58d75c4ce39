"""Repository names (``owner/name``) as the forges define them (pure).

Every forge restricts both parts to ASCII letters, digits and ``- _ .``:

* Gitea / Forgejo: ``models/repo/repo.go`` ``IsUsableRepoName`` (``^[-.\\w]+$``,
  no ``..`` anywhere, ``.``/``..`` reserved) and ``modules/validation/helpers.go``
  ``IsValidUsername`` (``^[\\da-zA-Z][-.\\w]*$``) — read at Gitea v1.24.0
  (7ed1e898) and Forgejo v15.0.0 (f25747d0).
* GitHub: owners are letters, digits and ``-`` (plus the ``_shortcode`` of
  Enterprise Managed Users); repository names
  letters, digits, ``-``, ``_``, ``.`` (at most 100), never ``.`` or ``..``.

``is_repository_name`` is the union of those rules (what any supported forge
can send); the forge parsers apply their own, stricter one. Anything else —
``acme/..``, ``acme/x\\ny``, ``acme/a/b``, non-ASCII look-alikes — is not a
repository, so no allow-list pattern can admit it.
"""

from __future__ import annotations

import re

_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# Gitea/Forgejo: a name of the characters above without two dots in a row;
# owners start with a letter, digit or ``_`` (legacy user names may).
_GITEA_OWNER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_GITEA_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# Enterprise Managed Users add an ``_shortcode`` suffix to user names.
_GITHUB_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_GITHUB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _split(name: object) -> tuple[str, str] | None:
    if not isinstance(name, str):
        return None
    owner, sep, repo = name.partition("/")
    if not sep:
        return None
    return owner, repo


def _dots_ok(part: str) -> bool:
    return part not in (".", "..")


def is_repository_name(name: object) -> bool:
    """Whether ``name`` is an ``owner/name`` some supported forge can produce."""
    parts = _split(name)
    if parts is None:
        return False
    return all(_PART.fullmatch(p) is not None and _dots_ok(p) for p in parts)


def gitea_repository_problem(name: object) -> str | None:
    """Why ``name`` is not a Gitea/Forgejo repository, or ``None``."""
    parts = _split(name)
    if parts is None:
        return "must be owner/name"
    owner, repo = parts
    if _GITEA_OWNER.fullmatch(owner) is None or ".." in owner:
        return "owner must be letters, digits, '-', '_' or '.' (no '..')"
    if _GITEA_NAME.fullmatch(repo) is None or ".." in repo or not _dots_ok(repo):
        return "name must be letters, digits, '-', '_' or '.' (no '..')"
    return None


def github_repository_problem(name: object) -> str | None:
    """Why ``name`` is not a GitHub repository, or ``None``."""
    parts = _split(name)
    if parts is None:
        return "must be owner/name"
    owner, repo = parts
    if _GITHUB_OWNER.fullmatch(owner) is None:
        return "owner must be letters, digits, '-' or '_'"
    if _GITHUB_NAME.fullmatch(repo) is None or not _dots_ok(repo):
        return "name must be letters, digits, '-', '_' or '.' (at most 100; not '.' or '..')"
    return None


__all__ = ["gitea_repository_problem", "github_repository_problem", "is_repository_name"]
