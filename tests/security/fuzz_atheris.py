"""Coverage-guided fuzzing of the three forges' delivery parsers with atheris.

    python tests/security/fuzz_atheris.py [libFuzzer flags] [corpus dir]

Each input picks a parser and an event header, the rest is the body; the
only accepted outcomes are a :class:`Delivery` or a ``WebhookError`` with a
4xx status, anything else is a crash (the fuzzer stops and exits non-zero).
``tests/security/test_atheris.py`` runs it for a fixed number of inputs with
a fixed seed; run it by hand with ``-max_total_time=600`` for a longer hunt.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["scaler"]):
    from scaler.domain.repository import is_repository_name
    from scaler.errors import WebhookError
    from scaler.forges._common import INT64_MAX
    from scaler.forges.base import Delivery
    from scaler.forges.forgejo import parse_forgejo_delivery
    from scaler.forges.gitea import parse_gitea_delivery
    from scaler.forges.github import parse_github_delivery

Parser = Callable[[Mapping[str, str], bytes], Delivery]
PARSERS: list[tuple[str, Parser]] = [
    ("x-github-event", lambda h, b: parse_github_delivery("github", h, b)[0]),
    ("x-gitea-event", lambda h, b: parse_gitea_delivery("gitea", h, b)),
    ("x-forgejo-event", lambda h, b: parse_forgejo_delivery("forgejo", h, b)),
]
EVENTS = ["workflow_job", "workflow_job_waiting", "workflow_job_running", "workflow_job_success", "ping", "push"]


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    # Two selector bytes, then the body (not FuzzedDataProvider: it takes
    # integers from the end, where a JSON body's closing braces are).
    header, parser = PARSERS[data[0] % len(PARSERS)]
    event = EVENTS[data[1] % len(EVENTS)]
    body = data[2:]
    try:
        delivery = parser({header: event, "x-github-delivery": "d-1", "x-gitea-delivery": "d-1"}, body)
    except WebhookError as exc:
        if not 400 <= exc.status < 500:
            raise AssertionError(f"WebhookError with status {exc.status}") from exc
        return
    if not isinstance(delivery, Delivery):
        raise AssertionError(f"parser returned {type(delivery).__name__}")
    job = delivery.job
    if job is None:
        return
    if not (isinstance(job.id, int) and 0 < job.id <= INT64_MAX and is_repository_name(job.repository)):
        raise AssertionError(f"ill-typed job {job!r}")
    if job.run_id is not None and not 0 < job.run_id <= INT64_MAX:
        raise AssertionError(f"run id out of range {job!r}")


def _job(status: str) -> dict[str, object]:
    return {
        "id": 42,
        "run_id": 7,
        "status": status,
        "labels": ["ubuntu-latest", "self-hosted"],
        "runs_on": ["ubuntu-latest"],
        "runner_name": "rs-pool-j42",
        "handle": "h-42",
        "created_at": "2026-11-30T09:00:00Z",
        "started_at": "2026-11-30T09:00:01Z",
        "conclusion": None,
    }


def seeds() -> list[bytes]:
    """Well-formed deliveries (prefixed with the two selector bytes), so the
    mutations start deep inside the parsers instead of at JSON syntax."""
    out = []
    for action in ("queued", "waiting", "in_progress", "completed"):
        payload = {
            "action": action,
            "workflow_job": _job(action),
            "job": _job(action),
            "run": {"id": 7, "repository": {"full_name": "acme/app"}},  # Forgejo's WorkflowJobPayload
            "repository": {"full_name": "acme/app", "owner": {"login": "acme"}, "name": "app"},
            "installation": {"id": 9},
        }
        body = json.dumps(payload).encode()
        out += [bytes([p, e]) + body for p in range(len(PARSERS)) for e in (0, 1, 2)]
        hostile = {**payload, "workflow_job": {**_job(action), "id": -5}, "job": {**_job(action), "id": 2**63},
                   "repository": {"full_name": "acme/.."}}
        out.append(bytes([0, 0]) + json.dumps(hostile).encode())
    return out


def main() -> None:
    args = list(sys.argv)
    corpus = next((Path(a) for a in args[1:] if not a.startswith("-")), None)
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        for n, seed in enumerate(seeds()):
            (corpus / f"seed-{n:03d}").write_bytes(seed)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
