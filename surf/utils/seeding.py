"""Runtime-independent randomness: every draw is keyed by *what* it is for, never by draw order.

A mini-batch of layer l of task t comes from ``generator(seed, "batch", t, l)`` whether the vectorized engine,
a Flower client or a Ray worker asks for it, so all runtimes see the same numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit integer seed derived from ``seed`` and any printable keys (stable across processes)."""
    text = "/".join([str(int(seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def torch_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` keyed by ``(seed, *keys)``."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, *keys))
    return gen


def numpy_generator(seed: int, *keys: object) -> np.random.Generator:
    """A NumPy ``Generator`` keyed by ``(seed, *keys)``."""
    return np.random.default_rng(derive_seed(seed, *keys))
