"""Secret values: read from files or the environment, never printed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_REDACTED = "**********"


class Secret:
    """A secret string. ``str``/``repr`` never show it; ``reveal()`` does.

    Every revealed value is also registered with the log redactor, so a value
    that escapes into a message by accident is still masked.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value
        register_secret_value(value)

    def reveal(self) -> str:
        return self._value

    def encode(self) -> bytes:
        return self._value.encode()

    def __repr__(self) -> str:
        return f"Secret({_REDACTED})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


# Values known to be secret; the logging redactor masks each occurrence.
_KNOWN: set[str] = set()
_MIN_LEN = 6  # shorter values would mask ordinary words


# The same values by their first _MIN_LEN characters, so finding the secrets
# in a text costs one lookup per position instead of one search per secret
# (every minted runner token is registered: there can be many).
_BY_PREFIX: dict[str, set[str]] = {}
_SCAN_ABOVE = 32  # with fewer secrets a plain search of each is faster
# How many known values there are of each length: a text shorter than the
# shortest cannot hold one (most log fields: names, ids, words, are short,
# and runner tokens are 40 characters), so it is not scanned at all.
_LENGTHS: dict[int, int] = {}


def register_secret_value(value: str) -> None:
    if len(value) >= _MIN_LEN and value not in _KNOWN:
        _KNOWN.add(value)
        _BY_PREFIX.setdefault(value[:_MIN_LEN], set()).add(value)
        _LENGTHS[len(value)] = _LENGTHS.get(len(value), 0) + 1


def forget_secret_value(value: str) -> None:
    """Stop masking a value that can no longer be used (a deregistered
    runner's token), so the registry stays bounded."""
    if value not in _KNOWN:
        return
    _KNOWN.discard(value)
    left = _LENGTHS.pop(len(value), 1) - 1
    if left:
        _LENGTHS[len(value)] = left
    bucket = _BY_PREFIX.get(value[:_MIN_LEN])
    if bucket is not None:
        bucket.discard(value)
        if not bucket:
            del _BY_PREFIX[value[:_MIN_LEN]]


def known_secret_values() -> frozenset[str]:
    return frozenset(_KNOWN)


def secrets_in(text: str) -> list[str]:
    """The known secret values that occur in ``text``, longest first."""
    if not _LENGTHS or len(text) < min(_LENGTHS):
        return []
    if len(_KNOWN) <= _SCAN_ABOVE:
        found = {s for s in _KNOWN if s in text}
    else:
        found = {
            s
            for i in range(len(text) - _MIN_LEN + 1)
            for s in _BY_PREFIX.get(text[i : i + _MIN_LEN], ())
            if text.startswith(s, i)
        }
    return sorted(found, key=len, reverse=True)


def read_secret_file(path: str | Path) -> Secret:
    """Read a secret file; the error names the file, never its content."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file {p} does not exist") from None
    except PermissionError:
        raise ValueError(f"secret file {p} is not readable") from None
    except UnicodeDecodeError:
        raise ValueError(f"secret file {p} is not UTF-8 text") from None
    value = text.strip()
    if not value:
        raise ValueError(f"secret file {p} is empty")
    return Secret(value)


def read_secret_env(name: str) -> Secret:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(f"environment variable {name} is not set")
    if not value.strip():
        raise ValueError(f"environment variable {name} is empty")
    return Secret(value.strip())


def readable_by_others(path: str | Path) -> bool:
    """Whether anyone but this process's own user and group may read the file
    (``check`` warns). Group-read is fine when the group is our own: that is
    how Kubernetes mounts a Secret with ``fsGroup`` (root:fsGroup, at least
    0440), and nobody else is in the container's group."""
    try:
        st = Path(path).stat()
    except OSError:
        return False
    if st.st_mode & stat.S_IROTH:
        return True
    return bool(st.st_mode & stat.S_IRGRP) and st.st_gid != os.getegid()
