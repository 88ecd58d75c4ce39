"""Providers are found through the ``runner_scaler.providers`` entry points;
the core never imports one by name."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from scaler.config import Config
from scaler.errors import ConfigError
from scaler.provider import ENTRY_POINT_GROUP, Provider, ProviderSettings


def provider_types() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_factory(type_name: str) -> Any:
    eps = provider_types()
    if type_name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise LookupError(f"no provider type {type_name!r} (installed: {known})")
    return eps[type_name].load()


def _model_problems(model: Any, data: Any, where: str) -> list[str]:
    if model is None:
        return [] if not data else [f"{where}: this provider takes no options"]
    try:
        model.model_validate(dict(data))
    except ValidationError as err:
        out = []
        for e in err.errors(include_url=False):
            loc = ".".join(str(p) for p in e["loc"])
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
            # a model-level check names its key first ("workdir: …"): no empty path segment
            out.append(f"{where}.{loc}: {msg}" if loc else f"{where}.{msg}")
        return out
    return []


def validate_provider_options(config: Config) -> list[str]:
    """Each provider's and each pool's provider options, checked by the
    provider's own models; problems carry their config path."""
    problems: list[str] = []
    factories: dict[str, Any] = {}
    for i, p in enumerate(config.providers):
        try:
            factories[p.name] = load_factory(p.type)
        except LookupError as exc:
            problems.append(f"providers[{i}].type: {exc}")
            continue
        except ImportError as exc:
            problems.append(f"providers[{i}].type: provider {p.type!r} cannot be loaded ({exc})")
            continue
        problems += _model_problems(
            getattr(factories[p.name], "settings_model", None), p.options, f"providers[{i}].options"
        )
    for i, pool in enumerate(config.pools):
        factory = factories.get(pool.provider)
        if factory is not None:
            model = getattr(factory, "pool_options_model", None)
            pool_problems = _model_problems(model, pool.provider_options, f"pools[{i}].provider_options")
            problems += pool_problems or _pool_hook_problems(factory, config, i)
    return problems


def _pool_hook_problems(factory: Any, config: Config, i: int) -> list[str]:
    """What the provider's own ``validate_pool`` says of pool ``i`` (see
    :class:`scaler.provider.ProviderFactory`), with the pool's path."""
    hook = getattr(factory, "validate_pool", None)
    if not callable(hook):
        return []
    pool = config.pools[i]
    forge = config.forge(pool.forge)
    found = hook(pool.model_dump(mode="json"), forge.model_dump(mode="json"))
    return [f"pools[{i}].{p}" for p in found]


def build_providers(config: Config) -> dict[str, Provider]:
    """Every provider of the config; ConfigError if one refuses a pool of its
    own (its ``validate_pool``), however the config reached here."""
    problems: list[str] = []
    for i, pool in enumerate(config.pools):
        problems += _pool_hook_problems(load_factory(config.provider(pool.provider).type), config, i)
    if problems:
        raise ConfigError(problems)
    out: dict[str, Provider] = {}
    for p in config.providers:
        factory = load_factory(p.type)
        out[p.name] = factory(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
    return out
