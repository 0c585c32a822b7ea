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


WORK_PER_THREAD = 2**18  # floats of a problem's largest per-step tensor that make one more thread pay (measured)


def configure_threads(requested: int, work: int) -> int:
    """Set torch's intra-op threads: ``requested`` if > 0, otherwise one thread per ``WORK_PER_THREAD`` floats of
    the problem's largest per-step tensor (``work``), at least 1 and at most every core. Measured on the 2-core
    machine (``benchmarks/bench_threads.py``, BENCHMARKS.md), a second thread makes the compact meta-step 1.25x
    faster at the quickstart's 100 agents (work 2**20) but only 1.09-1.13x at 20 and 50 agents (work below
    2**19, one thread here), where the risk weighs more: a thread that waits for a busy core costs far more than it
    gains. The compact classifier's numbers do not depend on the count (``surf.utils.invariant``). Returns the
    count."""
    threads = requested if requested > 0 else min(os.cpu_count() or 1, max(1, work // WORK_PER_THREAD))
    torch.set_num_threads(threads)
    return threads
