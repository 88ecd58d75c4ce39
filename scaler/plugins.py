"""Providers are found through the ``runner_scaler.providers`` entry points;
the core never imports one by name."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from scaler.config import Config
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
        return [
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
            for e in err.errors(include_url=False)
        ]
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
            problems += _model_problems(model, pool.provider_options, f"pools[{i}].provider_options")
    return problems


def build_providers(config: Config) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for p in config.providers:
        factory = load_factory(p.type)
        out[p.name] = factory(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
    return out
