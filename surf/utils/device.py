"""Where and how wide a run computes: its device and its CPU threads."""

from __future__ import annotations

import os

import torch

from surf.utils.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when present, else cpu; ``cuda`` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
    return torch.device(name)


SMALL_WORK = 2**22  # floats in a problem's largest per-step tensor below which extra threads cost more than they save


def configure_threads(requested: int, work: int) -> int:
    """Set torch's intra-op threads: ``requested`` if > 0, otherwise chosen by problem size — one thread for small
    problems (``work`` floats < SMALL_WORK: OpenMP's fork/join costs more than tiny ops gain, and badly so on a
    shared machine), every core above. Returns the count."""
    threads = requested if requested > 0 else (1 if work < SMALL_WORK else os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads
