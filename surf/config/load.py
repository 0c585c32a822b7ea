"""Config files: YAML plus dot-path overrides (``-o trainer.lr=1e-3``) -> a validated ``Config``, and back.

Unknown keys and values of the wrong type are errors (``ConfigError``, one line naming the fix).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from surf.config.schema import Config
from surf.config.validate import validate
from surf.utils.errors import ConfigError
from surf.utils.typed import build, plain_copy, set_dotted


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.path=value`` strings; values are YAML scalars/lists (``1e-3``, ``true``, ``[1, 2]``)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"override {item!r}: value is not valid YAML ({reason})") from None
        parsed.append((key.strip(), value))
    return parsed


# a sweep file's keys besides its name (surf.app.sweep): a config holding one is a sweep given to the wrong command
SWEEP_ONLY = ("base", "set", "matrix", "include", "seeds", "eval_matrix", "eval_include", "figure", "description")


def from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Build and validate a Config from a mapping plus ``key=value`` overrides."""
    raw = plain_copy(raw or {})
    for key, value in parse_overrides(overrides or []):
        set_dotted(raw, key, value)
    return validate(build(Config, raw))


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file; missing file or bad YAML is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found (see `surf list` for the bundled configs)")
    raw = read_mapping(path, "a mapping of config sections")
    sweep = [key for key in SWEEP_ONLY if key in raw]
    if sweep:
        raise ConfigError(f"{path} is a sweep (it has '{sweep[0]}:'), not a run config: run it with `surf sweep "
                          f"{path}`")
    raw.setdefault("name", path.stem)
    return from_dict(raw, overrides)


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file: {}); bad YAML or another type is a one-line ConfigError."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected {what}, got {type(raw).__name__}")
    return raw


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (what ``config.yaml`` holds)."""
    return dataclasses.asdict(cfg)


EXECUTION_ONLY = ("threads",)  # how wide a run computes, not what: the same numbers on any count (surf.utils.invariant)


def identity(config: Any) -> Any:
    """A config dict without its execution-only fields: what a resumed run and a stored trained cell must match.
    Anything else (a corrupt ``config.yaml`` read as a string) is returned as it is, and matches no config."""
    return {**config, **dict.fromkeys(EXECUTION_ONLY)} if isinstance(config, dict) else config


def upgraded(saved: Any) -> Any:
    """A saved, resolved config dict read through today's schema: fields added since take their defaults, so a run
    directory written before an upgrade still matches its config. Anything that no longer validates, or is not a
    mapping, is returned as it is (and matches no current config)."""
    if not isinstance(saved, dict):
        return saved
    try:
        return to_dict(from_dict(saved))
    except ConfigError:
        return saved
