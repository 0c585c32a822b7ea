"""Softmax regression for all agents at once.

Agent i holds ``W_i in R^{(d+1) x C}`` (weights plus a bias row; features carry a trailing 1) and minimizes the mean
cross-entropy of its own samples. All functions are batched over the agent dimension and built from ordinary torch
ops, so gradients are differentiable w.r.t. ``W`` (constraint gradients flow to the unrolled parameters without
``autograd.functional.jacobian``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_agent_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a_i @ b_i`` for a (N, m, k) shared by every leading index of b (..., N, k, c) -> (..., N, m, c).

    Broadcast ``torch.matmul`` would copy ``a`` once per leading index and run many tiny products; folding the
    leading dims into the columns makes it one batched product over agents (same result, several times faster
    for a grid of settings or a stack of layers).
    """
    if a.dim() != 3 or b.dim() <= 3:
        return torch.matmul(a, b)
    lead, (n, k, c) = b.shape[:-3], b.shape[-3:]
    folded = b.reshape(-1, n, k, c).permute(1, 2, 0, 3).reshape(n, k, -1)  # (N, k, lead * c)
    out = torch.bmm(a, folded).reshape(n, a.shape[1], -1, c)  # (N, m, lead, c)
    return out.permute(2, 0, 1, 3).reshape(*lead, n, a.shape[1], c)


def logits(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-agent logits ``X_i W_i``: w (..., N, d+1, C), x (N, m, d+1) -> (..., N, m, C)."""
    return per_agent_matmul(x, w)


def agent_losses(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each agent on its samples: f_i(W_i) = (1/m) sum_j CE(x_ij W_i, y_ij) -> (..., N)."""
    z = logits(w, x)
    log_p = torch.log_softmax(z, dim=-1)
    picked = torch.gather(log_p, -1, y.expand(z.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return -picked.mean(dim=-1)


def agent_gradients(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed-form per-agent gradient of the mean CE: grad f_i = X_i^T (softmax(X_i W_i) - Y_i) / m -> w's shape."""
    z = logits(w, x)
    residual = torch.softmax(z, dim=-1) - F.one_hot(y, z.shape[-1]).to(z.dtype)
    return per_agent_matmul(x.transpose(-1, -2), residual) / x.shape[-2]


def agent_accuracies(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of each agent's samples classified correctly by its own model -> (..., N)."""
    return (logits(w, x).argmax(dim=-1) == y).to(w.dtype).mean(dim=-1)


def stacked_norm(g: torch.Tensor, agents: torch.Tensor | None = None) -> torch.Tensor:
    """Frobenius norm of the stacked per-agent matrices ``||[g_1; ...; g_N]||_F`` (over ``agents`` if a mask)."""
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
