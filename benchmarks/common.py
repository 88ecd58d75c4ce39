"""Shared pieces: configs, realistic signed payloads, statistics, process helpers."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from scaler.config import Config, parse_config

SECRET = "bench-webhook-secret-0123456789"
SECRET_ENV = "RS_BENCH_SECRET"
CONTROLLER = "rs"
TOKEN_ENV = "RS_BENCH_TOKEN"
os.environ.setdefault(SECRET_ENV, SECRET)
os.environ.setdefault(TOKEN_ENV, "bench-api-token-not-used")


def config_data(
    *,
    pools: int = 20,
    pool_max: int = 100,
    max_instances: int = 2000,
    concurrency: int = 8,
    mint_concurrency: int = 8,
    create_latency: float = 0.0,
    delete_latency: float = 0.0,
    reconcile_interval: str = "5s",
    collect_interval: str = "10s",
    resync_interval: str = "30s",
) -> dict[str, Any]:
    options = {"create_latency": create_latency, "delete_latency": delete_latency}
    return {
        "controller_id": CONTROLLER,
        "forges": [
            {
                "name": "fake",
                "type": "fake",
                "url": "http://127.0.0.1:3000",
                "scope": {"kind": "organization", "name": "acme"},
                "webhook_secret_envs": [SECRET_ENV],
            }
        ],
        "providers": [{"name": "mem", "type": "memory", "concurrency": concurrency, "options": options}],
        "pools": [
            {
                "name": f"p{k}",
                "forge": "fake",
                "provider": "mem",
                "labels": [f"pool{k}:docker://node:20", "self-hosted"],
                "max": pool_max,
                "repositories": ["acme/*"],
            }
            for k in range(pools)
        ],
        "limits": {
            "max_instances": max_instances,
            "mint_concurrency": mint_concurrency,
            "event_queue_size": 100_000,
            "delivery_cache_size": 10_000,
        },
        "timing": {
            "reconcile_interval": reconcile_interval,
            "collect_interval": collect_interval,
            "resync_interval": resync_interval,
        },
        "logging": {"level": "info", "format": "json"},
    }


def make_config(**kw: Any) -> Config:
    return parse_config(config_data(**kw))


def job_labels(k: int) -> list[str]:
    return [f"pool{k}"]


# --- a realistic GitHub ``workflow_job`` payload (~6 KB) --------------------


def _user(login: str, uid: int, kind: str = "Organization") -> dict[str, Any]:
    base = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": "O_kgDOB" + "x" * 12,
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def _repository(full_name: str) -> dict[str, Any]:
    owner, name = full_name.split("/")
    api = f"https://api.github.com/repos/{full_name}"
    repo: dict[str, Any] = {
        "id": 123456789,
        "node_id": "R_kgDOH" + "y" * 12,
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": _user(owner, 87654321),
        "html_url": f"https://github.com/{full_name}",
        "description": "The application monorepo: services, web front-end and deployment tooling",
        "fork": False,
        "url": api,
    }
    for rel in (
        "forks",
        "keys{/key_id}",
        "collaborators{/collaborator}",
        "teams",
        "hooks",
        "issues/events{/number}",
        "events",
        "assignees{/user}",
        "branches{/branch}",
        "tags",
        "blobs{/sha}",
        "git/tags{/sha}",
        "git/refs{/sha}",
        "git/trees{/sha}",
        "statuses/{sha}",
        "languages",
        "stargazers",
        "contributors",
        "subscribers",
        "subscription",
        "commits{/sha}",
        "git/commits{/sha}",
        "comments{/number}",
        "issues/comments{/number}",
        "contents/{+path}",
        "compare/{base}...{head}",
        "merges",
        "{archive_format}{/ref}",
        "downloads",
        "issues{/number}",
        "pulls{/number}",
        "milestones{/number}",
        "notifications{?since,all,participating}",
        "labels{/name}",
        "releases{/id}",
        "deployments",
    ):
        key = rel.split("{")[0].split("/")[0].rstrip("s") + "_url"
        repo.setdefault(key, f"{api}/{rel}")
    repo.update(
        {
            "created_at": "2021-03-04T10:11:12Z",
            "updated_at": "2026-11-20T08:09:10Z",
            "pushed_at": "2026-11-22T05:06:07Z",
            "git_url": f"git://github.com/{full_name}.git",
            "ssh_url": f"git@github.com:{full_name}.git",
            "clone_url": f"https://github.com/{full_name}.git",
            "svn_url": f"https://github.com/{full_name}",
            "homepage": None,
            "size": 48213,
            "stargazers_count": 12,
            "watchers_count": 12,
            "language": "Python",
            "has_issues": True,
            "has_projects": False,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 1,
            "archived": False,
            "disabled": False,
            "open_issues_count": 37,
            "license": None,
            "allow_forking": False,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": ["ci", "platform"],
            "visibility": "private",
            "forks": 1,
            "open_issues": 37,
            "watchers": 12,
            "default_branch": "main",
            "custom_properties": {},
        }
    )
    return repo


def workflow_job_payload(
    job_id: int, repository: str, labels: Sequence[str], action: str, runner_name: str | None = None
) -> dict[str, Any]:
    run_id = 9_000_000_000 + job_id // 4
    api = f"https://api.github.com/repos/{repository}"
    status = {"queued": "queued", "waiting": "waiting", "in_progress": "in_progress"}.get(action, "completed")
    steps = (
        [
            {
                "name": n,
                "status": "completed",
                "conclusion": "success",
                "number": i + 1,
                "started_at": "2026-11-22T05:06:08Z",
                "completed_at": "2026-11-22T05:06:09Z",
            }
            for i, n in enumerate(
                (
                    "Set up job",
                    "Run actions/checkout@v4",
                    "Run make test",
                    "Post Run actions/checkout@v4",
                    "Complete job",
                )
            )
        ]
        if action == "completed"
        else []
    )
    return {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": run_id,
            "workflow_name": "CI",
            "head_branch": "feature/faster-runners",
            "run_url": f"{api}/actions/runs/{run_id}",
            "run_attempt": 1,
            "node_id": "CR_kwDOH" + "z" * 16,
            "head_sha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "url": f"{api}/actions/jobs/{job_id}",
            "html_url": f"https://github.com/{repository}/actions/runs/{run_id}/job/{job_id}",
            "status": status,
            "conclusion": "success" if action == "completed" else None,
            "created_at": "2026-11-22T05:06:07Z",
            "started_at": "2026-11-22T05:06:08Z",
            "completed_at": "2026-11-22T05:07:09Z" if action == "completed" else None,
            "name": "test (ubuntu-latest, 3.11)",
            "steps": steps,
            "check_run_url": f"{api}/check-runs/{job_id}",
            "labels": list(labels),
            "runner_id": 4242 if runner_name else None,
            "runner_name": runner_name,
            "runner_group_id": 1 if runner_name else None,
            "runner_group_name": "Default" if runner_name else None,
        },
        "repository": _repository(repository),
        "organization": {k: v for k, v in _user("acme", 87654321).items() if not k.endswith("s_url")},
        "sender": _user("octo-dev", 1234567, "User"),
        "installation": {"id": 55555555, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNTU1NTU1NTU="},
    }


# Which signature headers each forge sends (DESIGN, "Forge adapter contract").
SCHEMES = {
    "github": ("x-hub-signature-256",),
    "gitea": ("x-gitea-signature", "x-gogs-signature", "x-hub-signature-256"),
    "forgejo": ("x-forgejo-signature", "x-gitea-signature", "x-gogs-signature", "x-hub-signature-256"),
}


# The event and delivery-id headers each forge sends.
SENDERS = {
    "github": ("github",),
    "gitea": ("gitea", "gogs", "github"),
    "forgejo": ("forgejo", "gitea", "gogs", "github"),
}


# Forgejo names one event per job status.
FORGEJO_EVENTS = {
    "queued": "workflow_job_waiting",
    "in_progress": "workflow_job_running",
    "completed": "workflow_job_success",
}


def signed_headers(body: bytes, scheme: str = "github", secret: str = SECRET, action: str = "queued") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    delivery = str(uuid.uuid4())
    event = FORGEJO_EVENTS[action] if scheme == "forgejo" else "workflow_job"
    headers = {"content-type": "application/json"}
    for sender in SENDERS[scheme]:
        headers[f"x-{sender}-event"] = event
        headers[f"x-{sender}-delivery"] = delivery
    for h in SCHEMES[scheme]:
        headers[h] = f"sha256={digest}" if h == "x-hub-signature-256" else digest
    return headers


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# --- statistics ----------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[i]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- processes -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c cpu`` when taskset exists and the CPU is ours."""
    if cpu is None or shutil.which("taskset") is None or cpu not in os.sched_getaffinity(0):
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_json(cmd: list[str], timeout: float = 300) -> Any:
    """Run a benchmark subprocess that prints one JSON document on its last stdout line."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
