"""A matplotlib figure -> a PNG file: laid out, written atomically (rendered in memory, then
``surf.utils.io.atomic_write``: a killed process never leaves a truncated plot behind) and closed."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.utils.io import atomic_write  # noqa: E402

DPI = 110


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (its folder created if needed), close it and return ``path``."""
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=DPI, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, image.getvalue())
    return path
