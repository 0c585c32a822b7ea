"""Where the project's files are: the checkout holding ``pyproject.toml``, the root of every command's default
outputs (``runs/``) and of relative config, topology and scenario paths; and whether an output path can be written."""

from __future__ import annotations

import os
from pathlib import Path

from surf.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def check_output_path(path: str | Path, flag: str = "--out", folder: bool = True) -> None:
    """A one-line error before any work when ``path`` cannot become the output folder (``folder``) or file: it is a
    file where a folder is wanted (or the reverse), a file stands where a folder above it should be, or the nearest
    existing folder above it is not writable."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; choose a folder")
    if not folder and path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; name a file")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is a file, not a folder; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable; choose another {flag}")
