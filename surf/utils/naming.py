"""Stable, filesystem-safe names from override mappings (sweep cells, report groups)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

MAX_NAME = 120


def _format_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(_format_value(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}={_format_value(v)}" for k, v in sorted(value.items()))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can name one folder inside another (no separators, not empty, ``.`` or ``..``): a run's or
    sweep's default folder ``runs/<name>`` stays where it is meant to be."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def cell_name(overrides: dict[str, Any]) -> str:
    """``constraints.kind-none__seed-1`` from ``{constraints.kind: none, seed: 1}`` (``base`` if empty); names longer
    than ``MAX_NAME`` are cut and end in a hash of the full name."""
    if not overrides:
        return "base"
    text = "__".join(f"{key}-{_format_value(value)}" for key, value in overrides.items())
    text = re.sub(r"[^A-Za-z0-9._+=-]", "_", text)
    if len(text) > MAX_NAME:
        text = text[: MAX_NAME - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return text
