"""Crash-loop backoff: a pool whose runners die before coming online stops making new ones for a while."""

from __future__ import annotations

from scaler import events as ev
from scaler.config import parse_config
from scaler.domain.boot_failures import CRASH_LOOP_AFTER, BootFailures
from scaler.domain.instance import Instance, InstanceState
from scaler.domain.job import Job, JobState
from scaler.planner import PoolIndex, next_decision_at, plan
from scaler.provider import InstanceInfo, InstanceStatus
from scaler.store import Store
from tests.conftest import Harness, base_config, make_harness

S = InstanceState


def _store(pools: list[dict[str, object]] | None = None) -> tuple[Store, PoolIndex]:
    data = base_config()
    if pools is not None:
        data["pools"] = pools
    config = parse_config(data)
    store = Store(config)
    for h in store.providers.values():
        h.synced = True
    return store, PoolIndex(config)


def _boot_and_exit(store: Store, name: str, now: float, code: int = 1, pool: str = "small") -> None:
    store.add_pending(Instance(name, pool, "mem", S.PENDING, now, now))
    store.apply(ev.Minted(name, 7), now)
    store.apply(ev.Created(name, InstanceInfo(name, InstanceStatus.RUNNING, {})), now)
    store.apply(ev.InstanceObserved("mem", InstanceInfo(name, InstanceStatus.EXITED, {}, exit_code=code)), now)


def test_backoff_starts_after_three_ends_and_doubles() -> None:
    """The third end in a row holds the pool for backoff_initial, each further one for twice as long."""
    bf = BootFailures(initial=2.0, maximum=10.0)
    assert [bf.ended_before_online("p", 0.0, "exit code 1") for _ in range(CRASH_LOOP_AFTER - 1)] == [False, False]
    assert bf.ended_before_online("p", 0.0, "exit code 1") and bf.held(1.9) == {"p": 2.0} and bf.held(2.0) == {}
    bf.ended_before_online("p", 10.0, None)
    bf.ended_before_online("p", 20.0, None)
    bf.ended_before_online("p", 30.0, None)
    assert bf.streak("p")[:2] == (6, 40.0)  # 2 * 2**3 = 16, capped at 10


def test_a_pool_whose_runners_exit_before_online_is_held_back_as_crash_loop() -> None:
    """Three instances that exited non-zero before their runner was online: the queued job waits, held back."""
    store, index = _store()
    store.apply(ev.JobReported(Job("fake", 1, "acme/app", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    for n in range(CRASH_LOOP_AFTER):
        assert len(plan(store.snapshot(float(n)), index).creates) == 1
        _boot_and_exit(store, f"rs-small-{n}", float(n))
    snap = store.snapshot(2.5)
    result = plan(snap, index)
    assert result.creates == ()
    assert result.demand().held_back == {("small", "crash_loop"): 1}
    assert next_decision_at(snap, index) == 4.0  # the backoff's end wakes the planner (and a replay)
    assert len(plan(store.snapshot(4.0), index).creates) == 1


def test_a_clean_exit_or_a_runner_seen_online_is_no_crash() -> None:
    """Exit 0 (ran its one job) never counts, and a runner online ends the streak."""
    store, _ = _store()
    store.apply(ev.JobReported(Job("fake", 1, "acme/app", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    for n in range(5):
        _boot_and_exit(store, f"rs-small-c{n}", 0.0, code=0)
    assert store.boot_failures.streak("small")[0] == 0
    _boot_and_exit(store, "rs-small-a", 0.0)
    _boot_and_exit(store, "rs-small-b", 0.0)
    store.add_pending(Instance("rs-small-up", "small", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-small-up", 9), 0.0)
    store.apply(ev.Created("rs-small-up", InstanceInfo("rs-small-up", InstanceStatus.RUNNING, {})), 0.0)
    store.move("rs-small-up", S.IDLE, 0.5)
    assert store.boot_failures.streak("small")[0] == 0
    _boot_and_exit(store, "rs-small-d", 1.0)
    assert store.boot_failures.held(1.0) == {}


def test_a_held_pool_lets_the_next_candidate_serve() -> None:
    """Jobs of a pool in backoff fall through to the next pool that matches, as for an unavailable provider."""
    pool = base_config()["pools"][0]
    store, index = _store([dict(pool, name="first", priority=10), dict(pool, name="second", labels=["ubuntu-latest"])])
    for n in range(CRASH_LOOP_AFTER):
        _boot_and_exit(store, f"rs-first-{n}", 0.0, pool="first")
    store.apply(ev.JobReported(Job("fake", 1, "acme/app", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    assert [c.pool for c in plan(store.snapshot(0.5), index).creates] == ["second"]


async def test_runner_image_that_always_crashes_mints_a_bounded_number() -> None:
    """A pool whose every runner exits 1 at once makes a handful of runners a minute, not one per loop turn."""
    h: Harness = make_harness(auto_online=False)
    await h.scaler.rebuild()
    h.queue()
    creates = 0
    for _ in range(60):  # one virtual minute, a pass a second
        await h.scaler.settle()
        for inst in list(h.scaler.store.instances.values()):
            if inst.state is S.STARTING:
                h.provider.finish(inst.name, exit_code=1)
                creates += 1
        await h.scaler.resync.run_once()  # the provider listing sees the exits (no watch in the harness)
        await h.scaler.settle()
        h.clock.advance(1.0)
    # 3 at once, then one each after 2, 4, 8, 16, 32 s: 8 or 9 within the minute.
    assert 3 < creates <= 9, creates
    stats = h.scaler.pool_stats()["small"]
    assert stats["crash_loop"]["ended_before_online"] == creates
    assert stats["crash_loop"]["last_error"] == "exit code 1"
    assert len(h.forge.minted) == creates  # one credential per instance, none left over


def test_forgejo_runners_that_found_no_task_are_no_crash_loop() -> None:
    """forgejo-runner one-job's exit 2 (reached the forge, no task) is a working runner: it never brakes the pool."""
    from scaler.forges.forgejo import ONE_JOB_NO_TASK_EXIT
    from scaler.store import _NO_TASK_EXIT

    assert _NO_TASK_EXIT["forgejo"] == ONE_JOB_NO_TASK_EXIT
    data = base_config()
    data["forges"][0] = dict(data["forges"][0], type="forgejo", token_env="RS_TEST_SECRET")
    store = Store(parse_config(data))
    store.providers["mem"].synced = True
    _boot_and_exit(store, "rs-small-a", 0.0)
    _boot_and_exit(store, "rs-small-b", 0.0)
    for n in range(5):
        _boot_and_exit(store, f"rs-small-n{n}", 0.0, code=ONE_JOB_NO_TASK_EXIT)
    assert store.boot_failures.streak("small")[0] == 0 and store.boot_failures.held(0.0) == {}
    # Under a gitea forge, exit 2 is just a failure.
    store, _ = _store()
    for n in range(3):
        _boot_and_exit(store, f"rs-small-n{n}", 0.0, code=2)
    assert list(store.boot_failures.held(0.0)) == ["small"]
