"""Noise on the iterates of an unrolled model or a classical solver, through the ``perturb(l, x_l)`` hook.

One hook serves training-time noise injection and the test-time robustness protocol of every family: ``x_l +
s_l xi_l`` with ``xi_l ~ N(0, I)`` keyed by ``(seed, *key, l)`` (every method sees the same draws), or, with
``unit_norm``, ``xi_l / ||xi_l||`` per sample (the GLOW-Prox code's ``n / ||n||``), optionally clamped to a range
(images). Scales are indexed by the layer ``l = 0..L`` (0 = the initial iterate, which only some models perturb).
"""

from __future__ import annotations

import torch

from surf.problems.proximal import Perturb
from surf.utils.seeding import torch_generator


def noise_hook(seed: int, key: tuple, scales: list[float], unit_norm: bool = False,
               clamp: tuple[float, float] | None = None) -> Perturb:
    """``x_l + scales[l] xi_l`` (``xi_l`` unit-norm per sample when ``unit_norm``), then clamped to ``clamp``.

    Layers past the end of ``scales`` or with scale 0 are left untouched (not clamped either).
    """

    def perturb(layer: int, x: torch.Tensor) -> torch.Tensor:
        scale = scales[layer] if layer < len(scales) else 0.0
        if scale == 0.0:
            return x
        noise = torch.randn(x.shape, generator=torch_generator(seed, *key, layer)).to(x.device, x.dtype)
        if unit_norm:
            noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        x = x + scale * noise
        return x if clamp is None else x.clamp(*clamp)

    return perturb


def injection_scales(level: float, decay: float, layers: int, first: int = 1) -> list[float]:
    """Training-noise schedule ``s_l = level / (l - first + 1)^decay`` on ``L - 1`` iterates from ``x_first``, 0
    elsewhere -> (L+1,) indexed by l.

    ``first = 1``: the outputs of layers 1..L-1 (robust LISTA, ``sigma_l = level / l^decay``); ``first = 0``: the
    inputs of every layer but the last, ``x_0..x_{L-2}``, with ``level / (l + 1)`` (the GLOW-Prox code, ``decay = 1``).
    The output ``x_L`` is never perturbed.
    """
    return [level / (layer - first + 1) ** decay if first <= layer < first + layers - 1 else 0.0
            for layer in range(layers + 1)]
