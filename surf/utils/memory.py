"""Handing freed heap memory back to the operating system between the layers of a large unroll.

A large unroll (``model.recompute``, 10,000+ agents) frees many chunk-sized temporaries between the full-size
tensors it keeps for the backward pass. glibc's allocator keeps the freed pages of its heap resident unless asked
to return them, so the process's peak resident memory grew to about 2.6x the tensors alive at any time (measured
at 10,000 agents: 1.7 GiB of live tensors in a 4.8 GiB heap, 3.0 GiB of it free). ``malloc_trim(0)`` after every
layer (forward) and at every layer's gradient (backward) returns those pages; the next allocations fault them back
in (measured: 2.4 instead of 5.8 GiB at 10,000 agents, 13 % more time per step; BENCHMARKS.md). A no-op where the
C library has no ``malloc_trim``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import torch


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None


def release_freed_memory() -> None:
    """Return the heap's free pages to the operating system (glibc ``malloc_trim(0)``; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_after_gradient(tensor: torch.Tensor) -> None:
    """Release freed memory again when the backward pass has computed the gradient of ``tensor`` (one layer)."""
    if tensor.requires_grad:
        tensor.register_hook(lambda _: release_freed_memory())
