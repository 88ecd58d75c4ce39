"""Forge adapter metrics (Prometheus default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

FORGE_REQUESTS = Counter(
    "runner_scaler_forge_requests_total",
    "HTTP requests made to a forge, by endpoint and status (status 'error' = no answer)",
    ["forge", "endpoint", "status"],
)
FORGE_RATE_LIMIT_REMAINING = Gauge(
    "runner_scaler_forge_rate_limit_remaining",
    "Requests left in the forge's current rate-limit window (X-RateLimit-Remaining)",
    ["forge"],
)
