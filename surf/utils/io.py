"""Atomic file writes (temp file + rename: a killed process never leaves a half-written file), checkpoint reads that
turn a truncated or corrupt file into a one-line error, and the source tree's git commit."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from surf.utils.errors import ConfigError


def atomic_write(path: Path, content: str | bytes, before_rename: Callable[[], None] | None = None) -> None:
    """Write ``content`` (text or bytes) to ``path`` through a temporary file of this process and an atomic rename
    (two processes writing the same file, e.g. a shared sweep's index, never trip over each other's temporary
    file). ``before_rename``: a test hook. A failed write (a full disk) leaves no temporary file and raises an
    OSError that names ``path``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)
    except OSError as exc:  # a full disk: no half-written temporary file, and an error that names the file
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if before_rename is not None:
        before_rename()
    os.replace(tmp, path)


def atomic_save(obj: Any, path: Path, before_rename: Callable[[], None] | None = None) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file of this process and an atomic rename
    (``before_rename``: a test hook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # torch.save into a file reports a full disk as an opaque RuntimeError
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue(), before_rename)


def load_checkpoint(path: Path, device: torch.device | str = "cpu", keys: tuple[str, ...] = ()) -> dict:
    """A checkpoint written by :func:`atomic_save` holding ``keys``; a missing, truncated or corrupt file is a
    one-line ``ConfigError`` naming it."""
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} is a folder, not a file; move it away and rerun" if path.is_dir() else
                          f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - whatever torch/pickle/zip raise, the file cannot be read
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"checkpoint {path} is truncated or corrupt ({reason}); delete it and rerun (without "
                          "--resume for last.pt, or retrain for best.pt)") from None
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ConfigError(f"checkpoint {path} is not a SURF checkpoint (missing {', '.join(missing)}); delete it "
                          "and rerun")
    return state


def git_sha() -> str:
    """The current commit of the source tree, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
