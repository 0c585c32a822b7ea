"""Atomic file writes (temp file + rename: a killed process never leaves a half-written file) and the source tree's
git commit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file of this process and an atomic rename (two processes
    writing the same file, e.g. a shared sweep's index, never trip over each other's temporary file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def git_sha() -> str:
    """The current commit of the source tree, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
