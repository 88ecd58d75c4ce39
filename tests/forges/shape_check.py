"""The recorded forge shapes (``tests/forges/shapes/*.json``) and a checker.

A shape lists the fields the real forge sends, read from its source at the
tags recorded beside it. ``Shapes.problems`` holds a value against one: every
field the forge always sends must be there, with its JSON type; nothing it
never sends (at that version) may be. ``Shapes.example`` builds values of a
shape (for deliveries the project has never seen).
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

from scaler.forges._common import parse_version

DIR = Path(__file__).resolve().parent / "shapes"
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@cache
def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DIR / f"{name}.json").read_text())
    return doc


def _version(text: str | None) -> tuple[int, int, int] | None:
    return parse_version(text) if text else None


class Shapes:
    """The shapes of one forge (or the runner protocol) at one version."""

    def __init__(self, name: str, version: str | None = None) -> None:
        self.doc = load(name)
        self.shapes: dict[str, Any] = self.doc["shapes"]
        self.version = _version(version)

    def _live(self, spec: dict[str, Any]) -> bool:
        """Whether a field exists at this version."""
        if self.version is None:
            return True
        since, until = _version(spec.get("since")), _version(spec.get("until"))
        return (since is None or self.version >= since) and (until is None or self.version < until)

    def _omittable(self, spec: dict[str, Any]) -> bool:
        since = _version(spec.get("omitempty_since"))
        if since is not None and self.version is not None and self.version < since:
            return False
        return bool(spec.get("omitempty"))

    def fields(self, name: str) -> dict[str, Any]:
        return {k: v for k, v in self.shapes[name].get("fields", {}).items() if self._live(v)}

    # --- checking ---------------------------------------------------------------

    def problems(self, name: str, value: Any, where: str = "") -> list[str]:
        """Why ``value`` is not what the forge sends as shape ``name``."""
        shape = self.shapes[name]
        if shape.get("open"):
            return [] if isinstance(value, dict) else [f"{where or name}: expected an object"]
        return self._object(shape.get("fields", {}), value, where or name)

    def _object(self, fields: dict[str, Any], value: Any, where: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        out: list[str] = []
        live = {k: v for k, v in fields.items() if self._live(v)}
        for key in value:
            if key not in live:
                why = "not at this version" if key in fields else "the forge never sends it"
                out.append(f"{where}.{key}: unexpected field ({why})")
        for key, spec in live.items():
            if key not in value:
                if not self._omittable(spec):
                    out.append(f"{where}.{key}: missing (the forge always sends it)")
                continue
            out += self._value(spec, value[key], f"{where}.{key}")
        return out

    def _value(self, spec: dict[str, Any], value: Any, where: str) -> list[str]:
        if value is None:
            nullable_ref = self.shapes.get(spec.get("ref", ""), {}).get("nullable")
            if spec.get("nullable") or nullable_ref or spec["type"] == "any":
                return []
            return [f"{where}: null where the forge sends a {spec['type']}"]
        kind = spec["type"]
        if kind == "any":
            return []
        types = _JSON_TYPES[kind]
        if not isinstance(value, types) or (kind in ("integer", "number") and isinstance(value, bool)):
            return [f"{where}: expected {kind}, got {type(value).__name__}"]
        if "enum" in spec and value not in spec["enum"]:
            return [f"{where}: {value!r} is not one of {spec['enum']}"]
        if kind == "array" and "items" in spec:
            return [p for i, item in enumerate(value) for p in self._value(spec["items"], item, f"{where}[{i}]")]
        if kind == "object":
            if "fields" in spec:
                return self._object(spec["fields"], value, where)
            ref = spec.get("ref")
            if ref in self.shapes:
                return self.problems(ref, value, where)
        return []

    # --- examples ---------------------------------------------------------------

    def example(self, name: str, rng: random.Random, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """A value of shape ``name``: optional fields present or not at random,
        nested shapes filled in, ``overrides`` (dotted keys) applied last."""
        value = self._example_object(self.shapes[name].get("fields", {}), rng, depth=0)
        for dotted, v in (overrides or {}).items():
            target = value
            *parents, last = dotted.split(".")
            for p in parents:
                if not isinstance(target.get(p), dict):
                    target[p] = {}
                target = target[p]
            if v is _ABSENT:
                target.pop(last, None)
            else:
                target[last] = v
        return value

    def _example_object(self, fields: dict[str, Any], rng: random.Random, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, spec in fields.items():
            if not self._live(spec) or (self._omittable(spec) and rng.random() < 0.5):
                continue
            out[key] = self._example_value(spec, rng, depth)
        return out

    def _example_value(self, spec: dict[str, Any], rng: random.Random, depth: int) -> Any:
        if spec.get("nullable") and (depth > 2 or rng.random() < 0.3):
            return None
        kind = spec["type"]
        if "enum" in spec:
            return rng.choice([e for e in spec["enum"] if e is not None] or [None])
        if kind == "integer":
            return rng.randint(0, 2**40)
        if kind == "number":
            return rng.random() * 100
        if kind == "string":
            return rng.choice(["", "x", "2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "main"])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "array":
            items = spec.get("items")
            if items is None or depth > 2:
                return []
            return [self._example_value(items, rng, depth + 1) for _ in range(rng.randint(0, 2))]
        if kind == "object":
            if "fields" in spec:
                return self._example_object(spec["fields"], rng, depth + 1)
            ref = spec.get("ref")
            if ref in self.shapes and depth < 3:
                return self._example_object(self.shapes[ref].get("fields", {}), rng, depth + 1)
            return {}
        return None


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


_ABSENT = _Absent()
ABSENT: Any = _ABSENT  # an override that removes the key


def headers_problems(forge: str, headers: dict[str, str]) -> list[str]:
    """Why a delivery's headers are not the set the forge sends."""
    spec = load(forge)["headers"]["webhook"]
    have = {k.lower() for k in headers}
    required = {h.lower() for h in spec["required"]}
    allowed = required | {h.lower() for h in spec.get("transport", [])}
    out = [f"header {h}: missing" for h in sorted(required - have)]
    out += [f"header {h}: the forge never sends it" for h in sorted(have - allowed)]
    return out


__all__ = ["ABSENT", "Shapes", "headers_problems", "load"]
