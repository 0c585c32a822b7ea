"""Typed mappings: plain dicts (YAML, JSON) <-> dataclasses, checked against the type hints, and the JSON Schema of a
dataclass. One implementation serves the config files, the summaries and the scenario files.

Unknown keys and values of the wrong type raise ``ConfigError`` (one line naming the key, the expected type and,
for a misspelt key, the closest valid one).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

from surf.utils.errors import ConfigError


def coerce_value(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (ints accepted for floats); raise ConfigError otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {hint}, got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [coerce_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint) or (str, Any)
        return {k: coerce_value(v, item, f"{where}.{k}") for k, v in value.items()}
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: expected one of {typing.get_args(hint)}, got {value!r}")
        return value
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, f"{where}.")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def build(cls: type, raw: Any, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursing into nested dataclasses; unknown keys are errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(names)})"
            raise ConfigError(f"unknown key '{where}'{hint}")
        hint_type = hints[key]
        if dataclasses.is_dataclass(hint_type):
            kwargs[key] = build(hint_type, value or {}, f"{where}.")
        else:
            kwargs[key] = coerce_value(value, hint_type, where)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None


def get_dotted(obj: Any, dotted: str) -> Any:
    """``obj.a.b`` for ``dotted = "a.b"``."""
    node = obj
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """``raw["a"]["b"] = value`` for ``dotted = "a.b"``, creating sections as needed."""
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def covering(dotted: str, prefixes: tuple[str, ...]) -> str | None:
    """The first of ``prefixes`` that is ``dotted`` or one of its sections (``data`` covers ``data.path``)."""
    return next((p for p in prefixes if dotted == p or dotted.startswith(p + ".")), None)


def plain_copy(raw: Any) -> Any:
    """A deep copy of nested dicts and lists (leaves shared)."""
    if isinstance(raw, dict):
        return {k: plain_copy(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [plain_copy(v) for v in raw]
    return raw


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of dataclass ``cls``: nested dataclasses become ``$defs``."""
    defs: dict[str, Any] = {}
    root = _schema(cls, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": cls.__name__, **root, "$defs": defs}


def _schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(option, defs) for option in typing.get_args(hint)]}
    if origin is list:
        return {"type": "array", "items": _schema(typing.get_args(hint)[0], defs)}
    if origin is dict:
        args = typing.get_args(hint)
        return {"type": "object", "additionalProperties": _schema(args[1], defs) if args else {}}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: recursive types
            hints = typing.get_type_hints(hint)
            fields = dataclasses.fields(hint)
            required = [f.name for f in fields if f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING]
            body = {"type": "object", "properties": {f.name: _schema(hints[f.name], defs) for f in fields},
                    "additionalProperties": False}
            if required:
                body["required"] = required
            if hint.__doc__:
                body["description"] = " ".join(hint.__doc__.split())
            defs[name] = body
        return {"$ref": f"#/$defs/{name}"}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint is Any:
        return {}
    raise TypeError(f"no JSON Schema for {hint!r}")
