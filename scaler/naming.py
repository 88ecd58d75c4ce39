"""Deterministic instance (and runner) names.

An instance made for a job is named after the job, so a retried create — or
a new leader replaying the same demand — lands on the same name and adopts
instead of duplicating. Names are DNS labels (≤ 63 characters) so every
provider can use them as they are.

A name is ``{stem}-{tail}``:

* the *stem* says whose it is: ``{controller}-{pool}``, or, when that leaves
  too little room, as much of it as fits followed by a hash of all of it
  (``stem()``); stems are fixed by the config, so :func:`check_stems` can
  prove at start-up that no two pools share one;
* the *tail* says which instance: ``j{job id in base 36}`` for a job's
  instance (``-2``, ``-3`` … for later ones of the same job), ``i{random}``
  for a warm one. Every job id in int64 has a tail of at most 17 characters,
  which is always kept whole, so distinct jobs get distinct names after any
  truncation. An id outside int64 (the parsers refuse those; this is defence
  in depth) gets ``h{hash of the id}`` instead of spinning or growing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable

from scaler.domain.job import Job

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_LEN = 63
INT64_MAX = 2**63 - 1
# Room the tail may take: "j" + 13 base-36 digits (int64) + "-" + a retry number.
TAIL_ROOM = 20
_STEM_HASH = 6  # base-36 characters: 31 bits, between the few pools of one config
_ID_HASH = 16  # base-36 characters: 82 bits, for ids no forge can send


def base36(n: int) -> str:
    """``n`` (≥ 0) in base 36. A negative ``n`` is a ValueError, never a
    loop without end (``divmod`` of a negative number never reaches 0)."""
    if n < 0:
        raise ValueError(f"base36 of a negative number ({n})")
    if n == 0:
        return "0"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
    return out


def _digest(text: str, length: int) -> str:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
    return base36(value).rjust(length, "0")[-length:]


def stem(controller: str, pool: str) -> str:
    """The part of every name of ``pool`` before its tail (no trailing ``-``)."""
    full = f"{controller}-{pool}"
    room = MAX_LEN - TAIL_ROOM - 1
    if len(full) <= room:
        return full
    keep = full[: room - _STEM_HASH - 1].rstrip("-")
    return f"{keep}-{_digest(full, _STEM_HASH)}"


def check_stems(controller: str, pools: Iterable[str]) -> list[str]:
    """Problems that would let two pools' names meet: two pools with one stem."""
    seen: dict[str, str] = {}
    problems = []
    for pool in pools:
        s = stem(controller, pool)
        if s in seen and seen[s] != pool:
            problems.append(f"pools {seen[s]!r} and {pool!r} share the name stem {s!r}; rename one")
        seen.setdefault(s, pool)
    return problems


def job_tail(job_id: int) -> str:
    if 0 <= job_id <= INT64_MAX:
        return f"j{base36(job_id)}"
    return f"h{_digest(str(job_id), _ID_HASH)}"


def owned_by(name: str, controller: str, pools: Iterable[str]) -> str | None:
    """The pool whose stem ``name`` carries (the longest, should one stem
    begin another), or None: not made by this controller."""
    matches = [(len(s), pool) for pool in pools if name.startswith((s := stem(controller, pool)) + "-")]
    return max(matches)[1] if matches else None


def instance_name(controller: str, pool: str, job: Job | None, taken: Callable[[str], bool]) -> str:
    head = stem(controller, pool)
    if job is not None:
        base = f"{head}-{job_tail(job.id)}"
        name, n = base, 1
        while taken(name) and n < 99_999:  # TAIL_ROOM holds five digits
            n += 1
            name = f"{base}-{n}"
        return name
    while True:
        name = f"{head}-i{secrets.token_hex(3)}"
        if not taken(name):
            return name
