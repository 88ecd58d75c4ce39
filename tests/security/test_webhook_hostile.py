"""Hostile webhook deliveries through the real route: each gets its
documented status (``scaler/web/webhooks.py``), one metric increment and one
log line, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.scenarios.sim import CANARY_WEBHOOK
from tests.security.target import Target, job_body, signature

Case = Callable[[Target], tuple[dict[str, str], bytes]]
GOOD = json.dumps(job_body()).encode()


def _signed(body: bytes, **extra: str) -> Case:
    return lambda t: (t.sign(body, **extra), body)


def _sig(value: str | None, body: bytes = GOOD, header: str = "x-hub-signature-256") -> Case:
    def case(t: Target) -> tuple[dict[str, str], bytes]:
        headers: dict[str, Any] = t.sign(body)
        del headers["x-hub-signature-256"]
        if value is not None:
            headers[header] = value.encode("utf-8")  # bytes: non-ASCII goes on the wire as is
        return headers, body

    return case


def _nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


SIGNATURES: dict[str, Case] = {
    "missing": _sig(None),
    "empty": _sig(""),
    "no-prefix": _sig(signature(CANARY_WEBHOOK, GOOD)),
    "not-hex": _sig("sha256=" + "zz" * 32),
    "wrong-secret": _sig("sha256=" + signature("another-secret-entirely", GOOD)),
    "truncated": _sig("sha256=" + signature(CANARY_WEBHOOK, GOOD)[:32]),
    "over-long": _sig("sha256=" + signature(CANARY_WEBHOOK, GOOD) + "00"),
    "sha1-only": _sig("sha1=" + signature(CANARY_WEBHOOK, GOOD, "sha1"), header="x-hub-signature"),
    "sha1-in-sha256-header": _sig("sha1=" + signature(CANARY_WEBHOOK, GOOD, "sha1")),
    "signature-of-other-body": _sig("sha256=" + signature(CANARY_WEBHOOK, b"{}")),
    "non-ascii": _sig("sha256=" + "é" * 64),
}

MALFORMED: dict[str, Case] = {
    "empty-body": _signed(b""),
    "not-json": _signed(b"this is not json"),
    "not-utf8": _signed(b"\xff\xfe\xfa{\x00}"),
    "json-array": _signed(b"[1, 2, 3]"),
    "json-string": _signed(b'"queued"'),
    "truncated-json": _signed(GOOD[: len(GOOD) // 2]),
    "nested-10000-lists": _signed(_nested(10_000, "list")),
    "nested-10000-objects": _signed(_nested(10_000, "object")),
    "nan": _signed(GOOD.replace(b"4242", b"NaN")),
}

# Every field the parser reads, with types it must refuse.
WRONG_TYPES: dict[str, list[object]] = {
    "action": [None, 1, ["queued"], {"a": 1}, "exploded"],
    "workflow_job": [None, "x", [], 5],
    "workflow_job.id": [None, "abc", 1.5, True, [], {}, "1e3"],
    "workflow_job.labels": ["ubuntu-latest", 5, [1, 2], {"a": "b"}, [None], [["ubuntu-latest"]]],
    "repository": [None, "acme/app", [], 7],
    "repository.full_name": [None, 123, ["acme/app"], {}, "no-slash"],
}
for _field, _values in WRONG_TYPES.items():
    for _v in _values:
        MALFORMED[f"{_field}={_v!r}"[:60]] = _signed(json.dumps(job_body(**{_field: _v})).encode())

CONTENT_TYPES: dict[str, Case] = {
    "text/plain": _signed(GOOD, **{"content-type": "text/plain"}),
    "form": _signed(GOOD, **{"content-type": "application/x-www-form-urlencoded"}),
    "missing": _signed(GOOD, **{"content-type": ""}),
    "xml": _signed(GOOD, **{"content-type": "application/xml"}),
    "multipart": _signed(GOOD, **{"content-type": "multipart/form-data; boundary=x"}),
}


async def _refused(case: Case, status: int, result: str) -> None:
    async with Target() as t:
        headers, body = case(t)
        before = t.state()
        answer = await t.post(headers, body)
        assert (answer.status, answer.body.get("result")) == (status, result), answer
        assert answer.metric_delta == 1
        assert len(answer.lines) == 1, answer.lines
        assert t.state() == before
        assert CANARY_WEBHOOK not in json.dumps(answer.body) + json.dumps(answer.lines)


@pytest.mark.parametrize("name", list(SIGNATURES))
async def test_bad_signature_401(name: str) -> None:
    await _refused(SIGNATURES[name], 401, "bad_signature")


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_400(name: str) -> None:
    await _refused(MALFORMED[name], 400, "malformed")


@pytest.mark.parametrize("name", list(CONTENT_TYPES))
async def test_wrong_content_type_415(name: str) -> None:
    await _refused(CONTENT_TYPES[name], 415, "unsupported_media_type")


async def test_unknown_forge_404() -> None:
    async with Target() as t:
        before = t.state()
        answer = await t.post(t.sign(GOOD), GOOD, forge="nope")
        assert (answer.status, answer.body["result"]) == (404, "unknown_forge")
        assert answer.metric_delta == 1 and len(answer.lines) == 1 and t.state() == before


@pytest.mark.parametrize("repo", ["evil/app", "acme-evil/app"])
async def test_unserved_repository_200(repo: str) -> None:
    async with Target() as t:
        body = json.dumps(job_body(**{"repository.full_name": repo})).encode()
        before = t.state()
        answer = await t.post(t.sign(body), body)
        assert (answer.status, answer.body["result"]) == (200, "not_served")
        assert answer.metric_delta == 1 and len(answer.lines) == 1
        # Recorded only to be counted as unservable: no instance, no provider call.
        after = t.state()
        assert after[0] == before[0] + 1 and after[2] == before[2] and after[4] == before[4]


@pytest.mark.parametrize("repo", ["ACME/../evil", "acme/app/../../x", "acme/..", "acme/x\ny", "acme/\x00"])
async def test_impossible_repository_name_400(repo: str) -> None:
    """A name no forge can have (``..``, control characters, a third part) is malformed, named as such."""
    async with Target() as t:
        body = json.dumps(job_body(**{"repository.full_name": repo})).encode()
        before = t.state()
        answer = await t.post(t.sign(body), body)
        assert (answer.status, answer.body["result"]) == (400, "malformed")
        assert "repository.full_name" in answer.body["error"] and t.state() == before


@pytest.mark.parametrize("job_id", [-5, 0, 2**63, 10**30])
async def test_impossible_job_id_400(job_id: int) -> None:
    """Ids are positive int64: anything else is a 400 naming the field, and nothing changes."""
    async with Target() as t:
        body = json.dumps(job_body(**{"workflow_job.id": job_id})).encode()
        before = t.state()
        answer = await t.post(t.sign(body), body)
        assert (answer.status, answer.body["result"]) == (400, "malformed")
        assert "workflow_job.id" in answer.body["error"] and t.state() == before


async def test_replayed_delivery_200() -> None:
    """The same delivery (same id) again: answered ``duplicate``, nothing changes."""
    async with Target() as t:
        headers = t.sign(GOOD)
        first = await t.post(headers, GOOD)
        assert first.status == 202
        before = t.state()
        again = await t.post(headers, GOOD)
        assert (again.status, again.body["result"]) == (200, "duplicate")
        assert again.metric_delta == 1 and len(again.lines) == 1 and t.state() == before


async def test_other_event_ignored_200() -> None:
    async with Target() as t:
        headers = t.sign(GOOD, **{"x-github-event": "push"})
        before = t.state()
        answer = await t.post(headers, GOOD)
        assert (answer.status, answer.body["result"]) == (200, "ignored")
        assert answer.metric_delta == 1 and len(answer.lines) == 1 and t.state() == before


async def test_duplicate_keys_are_read_one_way() -> None:
    """A signed body with duplicate keys: JSON's last-wins, or refused — never a 5xx,
    and never a job from the first (hidden) repository."""
    async with Target() as t:
        body = (
            b'{"action": "queued", "repository": {"full_name": "evil/app"}, "repository": {"full_name": "acme/app"},'
            b' "workflow_job": {"id": 1, "id": 7, "labels": ["ubuntu-latest"]}}'
        )
        answer = await t.post(t.sign(body), body)
        assert answer.status in (202, 400), answer
        assert len(answer.lines) == 1
        if answer.status == 202:
            (event,) = t.scaler.inbox.drain()
            assert event.job.repository == "acme/app" and event.job.id == 7  # type: ignore[union-attr]


async def test_queue_full_503_changes_nothing() -> None:
    async with Target(limits={"event_queue_size": 1}) as t:
        first = json.dumps(job_body()).encode()
        assert (await t.post(t.sign(first), first)).status == 202
        second = json.dumps(job_body(**{"workflow_job.id": 9})).encode()
        before = t.state()
        answer = await t.post(t.sign(second), second)
        assert (answer.status, answer.body["result"]) == (503, "queue_full")
        assert answer.metric_delta == 1 and len(answer.lines) == 1 and t.state() == before
