"""The compact step's coordinate-wise MLP ``w2 . tanh(W1 f + b1) + b2`` as one autograd function, applied to the
feature vector f of every coordinate of every agent.

It dominates the compact meta-step, so it is written for the machine (issue: "meta-training close to the
machine's limit"):

* features enter as an (F, M) tensor (a feature per row, M coordinates), so every product, forward and backward,
  is short and wide — the orientation MKL runs fast; ``nn.Linear``'s (M, F) layout made the backward's skinny
  products 5-10x slower;
* ``tanh(x) = 2 sigmoid(2x) - 1`` with the 2s folded into the weights, so the hidden layer is one ``sigmoid``
  (torch's CPU ``tanh`` kernel is several times slower) and its derivative one ``sigmoid_backward``:
  ``w2 . tanh(q) + b2 = (2 w2) . sigmoid(2q) + b2 - sum(w2)``;
* the hidden layer (H, M) is the only tensor it keeps for the backward pass besides the features (with
  ``model.recompute`` the whole local step is recomputed in the backward pass instead: ``surf.models.udgd``).

The backward is hand-written and the function is differentiated once (the meta-gradient), never twice.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from surf.utils.invariant import shifted, single_thread


class SigmoidLayer(torch.autograd.Function):
    """``y[m] = v . sigmoid(A features[:, m] + c)`` -> (M,), with features (F, M), A (H, F), c (H,), v (H,)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, a: torch.Tensor, c: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        hidden = torch.addmm(c.unsqueeze(1), a, features).sigmoid_()  # (H, M), in place: one buffer
        ctx.save_for_backward(features, a, v, hidden)
        return torch.mv(hidden.t(), v)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        features, a, v, hidden = ctx.saved_tensors
        grad_q = torch.outer(v, grad_out)
        torch.ops.aten.sigmoid_backward.grad_input(grad_q, hidden, grad_input=grad_q)  # in place: one buffer
        with single_thread():  # MKL splits these products' rounding by thread count (surf.utils.invariant)
            return a.t() @ grad_q, grad_q @ features.t(), grad_q.sum(1), torch.mv(hidden, grad_out)


def coordinate_mlp(features: torch.Tensor, first: torch.nn.Linear, second: torch.nn.Linear) -> torch.Tensor:
    """``Linear(F, H) -> tanh -> Linear(H, 1)`` (the parameters of ``first`` and ``second``) on (F, ...) features:
    returns the (...)-shaped output."""
    flat = features.reshape(features.shape[0], -1)
    w2 = second.weight[0]
    out = SigmoidLayer.apply(flat, 2.0 * first.weight, 2.0 * first.bias, 2.0 * w2)
    return shifted(out, second.bias - w2.sum()).reshape(features.shape[1:])
