"""The fake forge's lookups (``fake_forge_server/index.py``) answer what a scan
of every job and runner would, whatever moves them: a Hypothesis run of
queueing, blocking, taking, finishing and deleting, and status set by hand."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.testing.fake_forge_server import FakeForgeServer

OPS = st.lists(
    st.tuples(st.sampled_from(["queue", "block", "unblock", "take", "finish", "delete", "by_hand", "forget"]),
              st.integers(0, 40)),
    max_size=120,
)


def _scan_pick(srv: FakeForgeServer, labels: tuple[str, ...]) -> int | None:
    waiting = sorted((j for j in srv.jobs.values() if j.status == "waiting"), key=lambda j: j.id)
    return next((j.id for j in waiting if set(j.labels) <= set(labels)), None)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_indexed_lookups_match_a_full_scan(ops: list[tuple[str, int]]) -> None:
    """Every indexed lookup equals the brute-force scan after any sequence of moves."""
    srv = FakeForgeServer("gitea", "1.25.0")
    for op, k in ops:
        jobs = sorted(srv.jobs.values(), key=lambda j: j.id)
        job = jobs[k % len(jobs)] if jobs else None
        if op == "queue":
            srv.queue_job("acme/app" if k % 3 else "other/lib", ["ubuntu-latest"] if k % 2 else ["gpu"],
                          blocked=k % 5 == 0)
        elif op == "unblock" and job is not None and job.status == "blocked":
            srv.unblock(job)
        elif op == "block" and job is not None and job.status == "waiting":
            job.status = "blocked"  # a concurrency group holds it back
        elif op == "take":
            runner = srv.new_runner(f"r{k}", labels=["ubuntu-latest", "gpu"][: 1 + k % 2], ephemeral=k % 2 == 0)
            expected = _scan_pick(srv, runner.labels)
            picked = srv.pick_job(runner, None)
            assert (picked.id if picked else None) == expected
            if picked is not None:
                srv.set_status(picked, "running", runner)
        elif op == "finish" and job is not None and job.status == "running":
            srv.set_status(job, "success")
        elif op == "delete" and srv.runners:
            srv.drop_runner(list(srv.runners.values())[k % len(srv.runners)])
        elif op == "by_hand" and job is not None:
            job.status = ["waiting", "running", "failure", "blocked"][k % 4]
        elif op == "forget" and job is not None and job.done:
            srv.forget_job(job)
    for statuses in (("waiting",), ("waiting", "running"), ("success", "failure"), ("blocked",)):
        scan = [j.id for j in sorted(srv.jobs.values(), key=lambda j: j.id) if j.status in statuses]
        assert [j.id for j in srv.jobs_with_status(*statuses)] == scan
    for job in srv.jobs.values():
        if job.task_id is not None:
            assert srv.job_by_task(str(job.task_id)) is job
        assert srv.jobs_of_run(job.run_id) == [j for j in srv.jobs.values() if j.run_id == job.run_id]
    for runner in srv.runners.values():
        assert srv.runner_by_uuid(runner.uuid) is runner
        assert srv.runner_by_name(runner.name) is next(r for r in srv.runners.values() if r.name == runner.name)
    for scope in ("/orgs/acme", "/orgs/other", "/repos/acme/app", "/admin"):
        scan = [j.id for j in srv.jobs.values() if srv.in_scope(j, scope)]
        assert [j.id for j in srv.jobs_in_scope(list(srv.jobs.values()), scope)] == scan
    assert srv.runner_by_uuid("no-such-uuid") is None and srv.job_by_task("-1") is None
