"""Runtime-independent randomness: every draw is keyed by *what* it is for, never by draw order.

A mini-batch of layer l of task t comes from ``generator(seed, "batch", t, l)`` whether the vectorized engine,
a Flower client or a Ray worker asks for it, so all runtimes see the same numbers.

Per-agent draws (an agent's W_0, its mini-batch at a layer) come from a counter-based generator, Philox4x32-10
(Salmon et al., SC 2011; the Random123 known-answer vectors are in the tests): the key is
``derive_seed(seed, kind, task, layer)`` and the counter is ``(block, 0, agent)``. Agent i's numbers therefore depend
on ``(seed, kind, task, layer, i)`` only: a Flower node draws its own agents' numbers without materializing anyone
else's, and the vectorized engine draws the same numbers for all N agents at once (one vectorized evaluation over
the agent ids, no Python loop over agents).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # Philox4x32 multipliers
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)  # Weyl key increments
_LOW, _S32 = np.uint64(0xFFFFFFFF), np.uint64(32)


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


def philox4x32(counter: tuple, key: tuple[int, int], rounds: int = 10) -> tuple[np.ndarray, ...]:
    """Philox4x32-``rounds`` of counters ``(c0, c1, c2, c3)`` (arrays of 32-bit values, broadcast together) under
    the 2 x 32-bit ``key``; returns the 4 output words as uint64 arrays holding 32 bits each."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & _LOW, (k1 + _W1) & _LOW
        p0, p1 = _M0 * c0, _M1 * c2  # 32 x 32 -> 64-bit products, exact in uint64
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _LOW, (p0 >> _S32) ^ c3 ^ k1, p0 & _LOW
    return c0, c1, c2, c3


def keyed_words(seed: int, keys: tuple, agents: torch.Tensor, count: int) -> np.ndarray:
    """(len(agents), count) uint64 array of 32 random bits each: agent i's first ``count`` words of the Philox
    stream keyed by ``derive_seed(seed, *keys)`` with counter ``(block, 0, i mod 2^32, i div 2^32)``."""
    key = derive_seed(seed, *keys)
    ids = np.asarray(torch.as_tensor(agents).cpu(), dtype=np.uint64).reshape(-1, 1)
    blocks = np.arange(-(-count // 4), dtype=np.uint64).reshape(1, -1)
    words = philox4x32((blocks, np.uint64(0), ids & _LOW, ids >> _S32), (key & 0xFFFFFFFF, key >> 32))
    return np.stack(np.broadcast_arrays(*words), axis=-1).reshape(ids.shape[0], -1)[:, :count]


def keyed_normal(seed: int, keys: tuple, agents: torch.Tensor, count: int) -> torch.Tensor:
    """(len(agents), count) float32 standard normals per agent (Box-Muller on pairs of 32-bit uniforms in (0, 1);
    the tails are cut at |z| < 6.7, a probability of 2e-11)."""
    pairs = -(-count // 2)
    u = (keyed_words(seed, keys, agents, 2 * pairs).astype(np.float64) + 0.5) * 2.0**-32
    radius, angle = np.sqrt(-2.0 * np.log(u[:, 0::2])), 2.0 * np.pi * u[:, 1::2]
    z = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(u.shape[0], -1)[:, :count]
    return torch.from_numpy(z.astype(np.float32))


def keyed_integers(seed: int, keys: tuple, agents: torch.Tensor, count: int, high: int) -> torch.Tensor:
    """(len(agents), count) int64 uniform on ``0..high-1`` per agent (multiply-shift of 32-bit words; the bias is
    below high / 2^32)."""
    if not 1 <= high < 2**32:
        raise ValueError(f"high={high} must be in 1..2^32-1")
    words = keyed_words(seed, keys, agents, count)
    return torch.from_numpy(((words * np.uint64(high)) >> _S32).astype(np.int64))
