"""Every core Prometheus metric, declared once. Names start ``runner_scaler_``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Per-pool and per-forge state gauges are exported by the leader only: a
# follower holds no state, so sum() across replicas is the truth.
QUEUED_JOBS = Gauge(
    "runner_scaler_queued_jobs",
    "Jobs waiting that this pool serves, whatever its capacity (= assigned + held back; KEDA reads this)",
    ["pool"],
)
ASSIGNED_JOBS = Gauge("runner_scaler_assigned_jobs", "Waiting jobs the planner gave this pool", ["pool"])
HELD_BACK_JOBS = Gauge(
    "runner_scaler_held_back_jobs",
    "Waiting jobs no instance was planned for, by why"
    " (max, global_cap, provider_cap, provider_unavailable, crash_loop)",
    ["pool", "reason"],
)
UNSERVABLE_JOBS = Gauge(
    "runner_scaler_unservable_jobs", "Waiting jobs no pool can ever serve (labels or allow-list)", ["forge"]
)
POOL_MAX = Gauge("runner_scaler_pool_max_instances", "The pool's configured max", ["pool"])
IN_PROGRESS_JOBS = Gauge("runner_scaler_in_progress_jobs", "Jobs running on this pool's runners", ["pool"])
INSTANCES = Gauge("runner_scaler_instances", "Instances by pool and state", ["pool", "state"])
WEBHOOKS = Counter("runner_scaler_webhooks_total", "Webhook deliveries by result", ["forge", "event", "result"])
JOB_WAIT = Histogram(
    "runner_scaler_job_wait_seconds",
    "Time from queued to in_progress",
    ["pool"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
PROVIDER_OP = Histogram(
    "runner_scaler_provider_operation_seconds",
    "Provider calls by operation and result",
    ["provider", "operation", "result"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FORGE_OP = Histogram(
    "runner_scaler_forge_operation_seconds",
    "Forge adapter calls made by the core, by operation and result",
    ["forge", "operation", "result"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
)
RECONCILE = Histogram(
    "runner_scaler_reconcile_seconds",
    "Duration of one reconcile pass (apply events, plan, dispatch)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
)
LOOP_LAST_SUCCESS = Gauge(
    "runner_scaler_loop_last_success_timestamp_seconds", "When each loop last finished a pass", ["loop"]
)
LOOP_INTERVAL = Gauge("runner_scaler_loop_interval_seconds", "Each running loop's configured interval", ["loop"])
LOOP_ERRORS = Counter("runner_scaler_loop_errors_total", "Exceptions caught in a loop pass", ["loop"])
EVENTS_DROPPED = Counter("runner_scaler_events_dropped_total", "Events refused because the queue was full")
EVENT_QUEUE = Gauge("runner_scaler_event_queue_depth", "Events waiting for the reconciler")
INFLIGHT = Gauge("runner_scaler_inflight_operations", "Launches and teardowns under way", ["kind"])
IS_LEADER = Gauge("runner_scaler_leader", "1 when this replica is the leader")
WARM_TARGET = Gauge("runner_scaler_warm_target_idle", "Idle runners a warm pool holds for its wait target", ["pool"])
WARM_FORECAST = Gauge(
    "runner_scaler_warm_forecast_jobs", "Jobs a warm pool's forecast expects within one runner start time", ["pool"]
)
