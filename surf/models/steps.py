"""The local learned update ``step_l`` of a U-DGD layer (paper eq. 11), one module per variant.

* ``PaperStep``  : ``sigma(M_l [w_i || b_i] + d_l)`` on the raw vectorized batch (features then one-hot label per
  sample), a single fully connected layer of size (p + B(d+C)) x p, optionally with the authors' parameter-free
  BatchNorm across agents and Dropout. It sees labels as inputs, so it can memorize one classifier.
* ``CompactStep``: label-blind and permutation-equivariant: ``alpha_l g - beta_l delta - rms(g) * MLP_l(features)``
  where g is the agent's local gradient, delta its previous update, and the tiny MLP acts on every coordinate of W_i
  with shared weights (features: normalized g, delta, consensus gap H(W)-W, and w). Its size does not depend on d,
  C, batch size or N; untrained (MLP output zero) it is DGD with heavy-ball momentum beta_l. Optional extra features
  (``model.features``: gradient tracking, neighbour-averaged gradient, Adam-like normalization) are
  ``surf.models.features``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surf.config import ModelConfig
from surf.models.coordinate_mlp import coordinate_mlp
from surf.utils.invariant import scaled


def rms(v: torch.Tensor) -> torch.Tensor:
    """Per-agent root-mean-square over an agent's coordinates, shaped (..., N, 1, 1) for broadcasting."""
    return v.pow(2).mean(dim=(-2, -1), keepdim=True).add(1e-12).sqrt()


class PaperStep(nn.Module):
    """``sigma(M [w || b] + d)`` (eq. 11) with the authors' U(0, 0.1) initialization."""

    def __init__(self, num_features: int, num_classes: int, batch_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_classes = num_classes
        params = num_features * num_classes
        batch_width = batch_size * (num_features - 1 + num_classes)
        self.linear = nn.Linear(params + batch_width, params)
        nn.init.uniform_(self.linear.weight, 0.0, 0.1)
        nn.init.uniform_(self.linear.bias, 0.0, 0.1)
        self.batchnorm, self.dropout = cfg.batchnorm, cfg.dropout

    def forward(self, w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        samples = torch.cat([xb[..., :-1], F.one_hot(yb, self.num_classes).to(xb.dtype)], dim=-1)
        z = self.linear(torch.cat([w.reshape(n, -1), samples.reshape(n, -1)], dim=1))
        if self.batchnorm:  # authors' code: fresh BatchNorm over the agent dimension, always batch statistics
            z = F.batch_norm(z, None, None, training=True)
        z = F.dropout(z, self.dropout, self.training)
        return torch.relu(z).reshape(w.shape)


class CompactStep(nn.Module):
    """Label-blind local step: ``alpha g - beta delta - rms(g) * MLP(g~, delta~, gap~, w~, extra~)`` per coordinate,
    ``extra`` the optional features of ``model.features`` (``surf.models.features``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_inputs = 4 + len(cfg.features)
        self.step = nn.Parameter(torch.tensor(float(cfg.step_init)))
        self.momentum = nn.Parameter(torch.tensor(float(cfg.momentum_init)))
        self.mlp = nn.Sequential(nn.Linear(self.num_inputs, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)  # untrained model = heavy-ball DGD with step_init, momentum_init
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, w: torch.Tensor, grad: torch.Tensor, delta: torch.Tensor, gap: torch.Tensor,
                extra: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        return scaled(self.step, grad) - scaled(self.momentum, delta) - self._correction(w, grad, delta, gap, extra)

    def _correction(self, w: torch.Tensor, grad: torch.Tensor, delta: torch.Tensor, gap: torch.Tensor,
                    extra: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``rms(g) * MLP(g/rms(g), delta/rms(delta), gap/rms(gap), w/rms(w), ...)`` coordinate-wise."""
        raw = torch.stack([grad, delta, gap, w, *extra])  # (F, N, d+1, C)
        scales = rms(raw)  # (F, N, 1, 1): every feature's per-agent rms in one pass
        return coordinate_mlp(raw / scales, self.mlp[0], self.mlp[2]) * scales[0]
