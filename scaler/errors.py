"""The error tree.

Every error the core acts on is either *temporary* (retry later, with back-off)
or *permanent* (give up on this object and clean it up). Providers and forge
adapters raise the subclasses below; the reconciler only ever looks at which
branch an error belongs to, never at its concrete type.
"""

from __future__ import annotations


class ScalerError(Exception):
    """Base of every error runner-scaler raises on purpose."""


class TemporaryError(ScalerError):
    """Retrying later may succeed (timeouts, 429/5xx, a host that is down)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # A hint from the other side (e.g. ``Retry-After``), in seconds.
        self.retry_after = retry_after


class PermanentError(ScalerError):
    """Retrying will not help (bad image, forbidden, invalid request)."""


class ConfigError(PermanentError):
    """The configuration is invalid; ``problems`` lists every ``path: reason``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class ProviderError(ScalerError):
    """Base for errors raised by providers."""


class ProviderTemporaryError(ProviderError, TemporaryError):
    """The provider could not do it now; the same call may succeed later."""


class ProviderPermanentError(ProviderError, PermanentError):
    """The provider will never do it (the instance is marked failed)."""


class ForgeError(ScalerError):
    """Base for errors raised by forge adapters."""


class ForgeTemporaryError(ForgeError, TemporaryError):
    """The forge could not answer now (429, 5xx, timeout, connection)."""


class ForgePermanentError(ForgeError, PermanentError):
    """The forge refused for good (401/403/404 on a mint, validation errors)."""


class ForgeOutcomeUnknown(ForgeTemporaryError):
    """A call that changes the forge (a mint) got no answer: it may or may not
    have happened. A mint retried after this first looks the runner up by name."""


class PollSkipped(ForgeTemporaryError):
    """The adapter chose not to poll queued jobs this pass (e.g. to keep its
    rate-limit budget). Nothing is known about the queue; unlike returning
    ``None`` it does not mean the forge cannot list jobs."""


class RunnerBusyError(ForgeError):
    """Deregistration refused because the forge reports the runner busy."""


class WebhookError(ScalerError):
    """A delivery was refused; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class SignatureError(WebhookError):
    """Missing, malformed or wrong webhook signature."""

    status = 401


class MalformedDelivery(WebhookError):
    """The body is not a delivery this forge could have sent."""

    status = 400


def is_temporary(exc: BaseException) -> bool:
    """Whether ``exc`` should be retried; unknown exceptions are temporary.

    An unexpected exception (a bug, a library error we did not wrap) is treated
    as temporary so that one bad pass never turns into deleted instances.
    """
    return not isinstance(exc, PermanentError)
