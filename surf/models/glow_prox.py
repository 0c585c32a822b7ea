"""GLOW-Prox (robust unrolling, TSP 2024): unrolled proximal gradient for inpainting in a normalizing flow's latent
space, with per-layer Glow flows built from normflows' Glow blocks.

Layer ``l = 1..L`` maps ``x_{l-1}`` to ``x_l`` (``A = diag(mask)``, ``surf.problems.inpainting``):

    x~  = x_{l-1} + mu_l A^T (y - A x_{l-1})            gradient step on 1/2 ||y - A x||^2, mu_l >= 0      (G1)
    x~  = clamp(x~, 0, 1)                                 optional: projection onto the image box            (G1')
    z_l = G_l(x~) / (1 + lambda_l)                        prox of the Gaussian prior in G_l's latent space    (G2)
    x_l = clamp(G_l^{-1}(z_l), 0, 1)                                                                         (G3)

The authors' code takes the step with the opposite sign (``x - mu A^T (y - A x)``, an ascent step on the data
term); (G1) is the gradient step. ``mu_l = softplus(.)`` and ``lambda_l = softplus(.)`` keep both non-negative with a
non-zero gradient everywhere (the authors' ReLU of an N(0, 0.01^2) draw starts half of them at a dead zero).
The latent is the flow's full output (the authors' multi-scale Glow kept its last level only). ``x_0 = y``; the
trajectory also records ``z_0 = G_1(x_0)``, the first flow's latent of the start.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import normflows as nf
import torch
from torch import nn

from surf.problems.inpainting import data_step, gaussian_prox
from surf.problems.proximal import Perturb
from surf.utils.replicas import replicas


class LatentFlow(nn.Module):
    """A Glow ``G: x -> z`` on ``(C, H, W)`` images: per level a squeeze (2x2 pixels -> 4x channels) and ``depth``
    Glow blocks (affine coupling, invertible 1x1 convolution (LU), actnorm), over a standard normal base."""

    def __init__(self, shape: tuple[int, int, int], levels: int, depth: int, hidden: int) -> None:
        super().__init__()
        channels, height, width = shape
        flows: list[nf.flows.Flow] = []  # normflows order: latent -> data
        for _ in range(levels):
            channels, height, width = channels * 4, height // 2, width // 2
            with warnings.catch_warnings():  # normflows' LU-parametrized 1x1 conv calls the deprecated torch.lu once
                warnings.filterwarnings("ignore", "torch.lu is deprecated")
                level = replicas(lambda c=channels: nf.flows.GlowBlock(c, hidden, split_mode="channel", scale=True),
                                 depth)
            flows = level + [nf.flows.Squeeze()] + flows
        self.latent_shape = (channels, height, width)
        self.flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(self.latent_shape, trainable=False), flows)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``z = G(x)``."""
        return self.flow.inverse(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``x = G^{-1}(z)``."""
        return self.flow.forward(z)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(G(x); 0, I) + log |det dG/dx|`` per image (density pretraining)."""
        return self.flow.log_prob(x)

    def init_actnorm(self, images: torch.Tensor | None) -> None:
        """Glow's data-dependent actnorm initialization on ``images`` (unit-variance latent channels), or, with None,
        actnorm left at the identity; either way no later batch re-initializes it."""
        norms = [m for m in self.modules() if isinstance(m, nf.flows.ActNorm)]
        if images is not None:
            with torch.no_grad():
                self.encode(images)  # normflows initializes every actnorm on its first batch
        for norm in norms:
            norm.data_dep_init_done.fill_(1.0)


@dataclass
class GlowProxTrajectory:
    """Images ``x_0..x_L`` (``x_0 = y``) and latents ``z_0..z_L`` (``z_0 = G_1(x_0)``, ``z_l`` after the prox)."""

    x: list[torch.Tensor]
    z: list[torch.Tensor]


def _softplus_inverse(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class GlowProx(nn.Module):
    """``L`` layers (G1)-(G3) with per-layer flows (or one shared flow) and learned ``mu_l``, ``lambda_l``."""

    def __init__(self, shape: tuple[int, int, int], layers: int, levels: int = 1, depth: int = 4, hidden: int = 32,
                 shared_flow: bool = False, step_init: float = 1.0, prox_init: float = 0.1,
                 init_images: torch.Tensor | None = None, box_projection: bool = False) -> None:
        super().__init__()
        self.layers, self.box_projection = layers, box_projection
        count = 1 if shared_flow else layers
        self.flows = nn.ModuleList(replicas(lambda: LatentFlow(shape, levels, depth, hidden), count))
        for flow in self.flows:
            flow.init_actnorm(init_images)
        self.step_raw = nn.Parameter(torch.full((layers,), _softplus_inverse(step_init)))
        self.prox_raw = nn.Parameter(torch.full((layers,), _softplus_inverse(prox_init)))

    def flow(self, layer: int) -> LatentFlow:
        """``G_layer`` (layer = 1..L)."""
        return self.flows[0 if len(self.flows) == 1 else layer - 1]

    @property
    def steps(self) -> torch.Tensor:
        """``mu_1..mu_L >= 0``."""
        return nn.functional.softplus(self.step_raw)

    @property
    def proxes(self) -> torch.Tensor:
        """``lambda_1..lambda_L >= 0``."""
        return nn.functional.softplus(self.prox_raw)

    def layer(self, layer: int, x: torch.Tensor, y: torch.Tensor,
              mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer`` (1..L) from ``x_{layer-1} = x`` -> ``(x_layer, z_layer)``."""
        flow = self.flow(layer)
        x = data_step(x, y, mask, self.steps[layer - 1])  # (G1)
        if self.box_projection:
            x = x.clamp(0.0, 1.0)  # (G1')
        z = gaussian_prox(flow.encode(x), self.proxes[layer - 1])  # (G2)
        # (G3); an inverse that overflows on an input far outside the training images gives mid-grey, not NaN
        return torch.nan_to_num(flow.decode(z), nan=0.5).clamp(0.0, 1.0), z

    def forward(self, y: torch.Tensor, mask: torch.Tensor, perturb: Perturb | None = None) -> GlowProxTrajectory:
        """Unroll on observations ``y`` (B, C, H, W) with masks ``mask``; ``perturb(l, x_l)`` for l = 0..L."""
        x = y if perturb is None else perturb(0, y)
        xs, zs = [x], [self.flow(1).encode(x)]
        for layer in range(1, self.layers + 1):
            x, z = self.layer(layer, x, y, mask)
            if perturb is not None:
                x = perturb(layer, x)
            xs.append(x)
            zs.append(z)
        return GlowProxTrajectory(xs, zs)
