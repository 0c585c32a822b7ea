"""Which device a run computes on."""

from __future__ import annotations

import torch

from surf.utils.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when present, else cpu; ``cuda`` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
    return torch.device(name)
