"""The compact step's coordinate-wise MLP as one autograd function: ``w2 . tanh(W1 f + b1) + b2`` for every
coordinate's feature vector f (the compact model applies it to every entry of every agent's W).

Written for what dominates the compact meta-step (issue: "meta-training close to the machine's limit"):

* features enter as a (F, M) tensor (a feature per row, M coordinates) so that every matmul, forward and backward,
  is short and wide — the orientation MKL runs fast; the (M, F) layout of ``nn.Linear`` made the backward's skinny
  matmuls 5-10x slower;
* ``tanh(x) = 2 sigmoid(2x) - 1``: torch's CPU ``tanh`` kernel is several times slower than its ``sigmoid``; the two
  agree to within a float32 rounding (|difference| <= 2.4e-7);
* the hidden layer (H, M) — the only activation as large as the model times H — is kept for the backward pass or,
  with ``recompute``, rebuilt from the (F, M) features there (memory for 10,000+ agents).

The backward is hand-written (``tanh' = 1 - tanh^2``); the function is differentiated once (the meta-gradient),
never twice.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)`` as ``2 sigmoid(2x) - 1`` (in place on a fresh tensor)."""
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


def _hidden(features: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
    """``tanh(W1 f + b1)`` for all coordinates: (H, F) @ (F, M) -> (H, M)."""
    return fast_tanh(torch.addmm(b1.unsqueeze(1), w1, features))


class CoordinateMLP(torch.autograd.Function):
    """``out[m] = w2 . tanh(W1 features[:, m] + b1) + b2`` -> (M,); see the module docstring."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                b2: torch.Tensor, recompute: bool) -> torch.Tensor:
        hidden = _hidden(features, w1, b1)
        ctx.recompute = recompute
        ctx.save_for_backward(features, w1, b1, w2, None if recompute else hidden)
        return torch.mv(hidden.t(), w2).add_(b2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        features, w1, b1, w2, hidden = ctx.saved_tensors
        if hidden is None:
            hidden = _hidden(features, w1, b1)
        grad_w2 = torch.mv(hidden, grad_out)
        grad_pre = torch.outer(w2, grad_out).mul_(1.0 - hidden * hidden)  # tanh' = 1 - tanh^2
        grad_w1 = grad_pre @ features.t()
        grad_features = w1.t() @ grad_pre
        return grad_features, grad_w1, grad_pre.sum(1), grad_w2, grad_out.sum().reshape(1), None


def coordinate_mlp(features: torch.Tensor, first: torch.nn.Linear, second: torch.nn.Linear,
                   recompute: bool = False) -> torch.Tensor:
    """The MLP ``Linear(F, H) -> tanh -> Linear(H, 1)`` (parameters of ``first`` and ``second``) on (F, ...)
    features: returns the (...)-shaped output."""
    flat = features.reshape(features.shape[0], -1)
    out = CoordinateMLP.apply(flat, first.weight, first.bias, second.weight[0], second.bias, recompute)
    return out.reshape(features.shape[1:])
