"""Deterministic instance (and runner) names.

An instance made for a job is named after the job, so a retried create — or
a new leader replaying the same demand — lands on the same name and adopts
instead of duplicating. Names are DNS labels (≤ 63 characters) so every
provider can use them as they are.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from scaler.domain.job import Job

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_LEN = 63


def base36(n: int) -> str:
    if n == 0:
        return "0"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
    return out


def instance_name(controller: str, pool: str, job: Job | None, taken: Callable[[str], bool]) -> str:
    if job is not None:
        base = f"{controller}-{pool}-j{base36(job.id)}"
        name, n = base, 1
        while taken(name):
            n += 1
            name = f"{base}-{n}"
        return name[:MAX_LEN]
    while True:
        name = f"{controller}-{pool}-i{secrets.token_hex(3)}"[:MAX_LEN]
        if not taken(name):
            return name
