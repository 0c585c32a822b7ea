"""Softmax regression for all agents at once.

Agent i holds ``W_i in R^{(d+1) x C}`` (weights plus a bias row; features carry a trailing 1) and minimizes the mean
cross-entropy of its own samples. All functions are batched over the agent dimension and built from ordinary torch
ops, so gradients are differentiable w.r.t. ``W`` (constraint gradients flow to the unrolled parameters without
``autograd.functional.jacobian``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_logits(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-agent logits in class-major layout ``(X_i W_i)^T``: w (..., N, d+1, C), x (N, m, d+1) -> (..., N, C, m).

    Classes lead and samples are contiguous: softmax over the C classes then vectorizes along the m samples, and the
    batched products have the shapes MKL runs fastest (about 3x and 10x faster than the sample-major layout for
    the quickstart's 10 classes). A stack of models (leading dims of w) sharing one x is folded into the rows of a
    single batched product over agents; an x with the same leading dims is matched one to one.
    """
    if x.dim() == 3 and w.dim() > 3:
        lead, (n, k, c) = w.shape[:-3], w.shape[-3:]
        folded = w.reshape(-1, n, k, c).permute(1, 0, 3, 2).reshape(n, -1, k)  # (N, lead * C, d+1)
        out = torch.bmm(folded, x.transpose(1, 2)).reshape(n, -1, c, x.shape[1])  # (N, lead, C, m)
        return out.transpose(0, 1).reshape(*lead, n, c, x.shape[1])
    return torch.matmul(w.transpose(-1, -2), x.transpose(-1, -2))


def _by_agent(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a_i @ X_i`` for a (..., N, C, m) and x (N, m, d+1) or matching leading dims -> (..., N, C, d+1)."""
    if x.dim() == 3 and a.dim() > 3:
        lead, (n, c, m) = a.shape[:-3], a.shape[-3:]
        folded = a.reshape(-1, n, c, m).transpose(0, 1).reshape(n, -1, m)  # (N, lead * C, m)
        return torch.bmm(folded, x).reshape(n, -1, c, x.shape[2]).transpose(0, 1).reshape(*lead, n, c, x.shape[2])
    return torch.matmul(a, x)


def _labels(y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Labels (N, m) broadcast to the class-major logits' shape without the class dim: (..., N, 1, m)."""
    return y.expand(*shape[:-2], shape[-1]).unsqueeze(-2)


def _losses(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    picked = torch.gather(torch.log_softmax(z, dim=-2), -2, _labels(y, z.shape)).squeeze(-2)
    return -picked.mean(dim=-1)


def _accuracies(z: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    predicted = z.max(dim=-2).indices  # argmax's first-maximum ties, 5x faster than argmax over a strided dim
    return (predicted == y.expand(*z.shape[:-2], z.shape[-1])).to(dtype).mean(dim=-1)


def agent_losses(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each agent on its samples: f_i(W_i) = (1/m) sum_j CE(x_ij W_i, y_ij) -> (..., N)."""
    return _losses(class_logits(w, x), y)


def agent_gradients(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed-form per-agent gradient of the mean CE: grad f_i = X_i^T (softmax(X_i W_i) - Y_i) / m -> w's shape."""
    z = class_logits(w, x)
    residual = torch.softmax(z, dim=-2) - F.one_hot(y, z.shape[-2]).to(z.dtype).transpose(-1, -2)
    return _by_agent(residual, x).transpose(-1, -2) / x.shape[-2]


def agent_accuracies(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of each agent's samples classified correctly by its own model -> (..., N)."""
    return _accuracies(class_logits(w, x), y, w.dtype)


def agent_metrics(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(agent_accuracies, agent_losses)`` from one product of logits (the same numbers as the two calls)."""
    z = class_logits(w, x)
    return _accuracies(z, y, w.dtype), _losses(z, y)


def stacked_norm(g: torch.Tensor, agents: torch.Tensor | None = None, tasks: int = 1) -> torch.Tensor:
    """Frobenius norm of the stacked per-agent matrices ``||[g_1; ...; g_N]||_F`` (over ``agents`` if a mask):
    (..., N, d+1, C) -> (...); with ``tasks`` = T > 1 the agents are T tasks' side by side: -> (..., T)."""
    if tasks > 1:
        g = g.unflatten(-3, (tasks, -1))
    if agents is not None:
        g = g[..., agents, :, :]
    return torch.linalg.vector_norm(g.flatten(start_dim=-3), dim=-1)


def pooled_optimum(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, iters: int = 200
) -> torch.Tensor:
    """Minimizer of the pooled problem ``mean CE(x W, y) + (l2/2)||W||^2`` (L-BFGS), shape (d+1, C).

    Softmax regression on separable data has no finite minimizer, so the distance constraint (CII) measures the
    distance to this L2-regularized optimum; ``l2 > 0`` is required.
    """
    if l2 <= 0:
        raise ValueError("pooled_optimum needs l2 > 0 (unregularized softmax regression may have no minimizer)")
    x64, w = x.double(), torch.zeros(x.shape[-1], num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=iters, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x64 @ w, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().to(x.dtype)
