"""What a config asks to build, checked against this machine's memory before it is built: copies of a module (an
unrolled network's layers, a flow's blocks; ``model.layers=1000000000`` would otherwise build small modules in a
Python loop for hours before the memory runs out) and single allocations whose size comes from the config (a size
past what 64 bits hold overflows inside torch or numpy, with a traceback that says nothing about memory)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import torch
from torch import nn


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def check_fits(nbytes: int, what: str) -> None:
    """A MemoryError naming the bytes when ``what`` (``nbytes``) would not fit in physical memory."""
    memory = physical_memory()
    if memory is not None and nbytes > memory:
        raise MemoryError(f"{what} would allocate {nbytes} bytes")


def tensor_bytes(item: object) -> int:
    """Bytes of the tensors a dataclass holds (a task: its samples, signals or images)."""
    values = [getattr(item, f.name) for f in dataclasses.fields(item)] if dataclasses.is_dataclass(item) else []
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))


def replicas(build: Callable[[], nn.Module], count: int) -> list[nn.Module]:
    """``count`` modules from ``build``, in order (the first is built first, as in a plain loop: the same random
    draws); a MemoryError naming the bytes when ``count`` copies of the first would not fit in physical memory."""
    first = build()
    size = sum(t.numel() * t.element_size() for t in (*first.parameters(), *first.buffers()))
    check_fits(count * size, f"{count:,} copies of a {type(first).__name__}")
    return [first, *(build() for _ in range(count - 1))]
