"""What changed since a reader last looked: the keys the UI's indexes redo."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

# Past this many changed keys a reader starts afresh (as costly as redoing them).
CHANGES_MAX = 20_000
K = TypeVar("K", bound=Hashable)


class Changes(Generic[K]):
    """The keys changed since a reader last took them, so the UI's indexes
    redo only those. Bounded: past ``limit`` keys it keeps only "everything
    may have changed" (a reader then starts afresh, as it does the first time)."""

    def __init__(self, limit: int = CHANGES_MAX) -> None:
        self.limit = limit
        self._keys: set[K] = set()
        self._all = True

    def mark(self, key: K) -> None:
        if not self._all:
            self._keys.add(key)
            if len(self._keys) > self.limit:
                self.mark_all()

    def mark_all(self) -> None:
        self._all, self._keys = True, set()

    def take(self) -> set[K] | None:
        """The keys changed since the last take; None: maybe every one."""
        keys, everything = self._keys, self._all
        self._keys, self._all = set(), False
        return None if everything else keys

    def __len__(self) -> int:
        return len(self._keys)


__all__ = ["CHANGES_MAX", "Changes"]
