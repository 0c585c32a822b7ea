"""Where the project's files are: the checkout holding ``pyproject.toml``, the root of every command's default
outputs (``runs/``) and of relative config, topology and scenario paths."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
