"""The LASSO (sparse coding) problem ``min_x F(x) = 1/2 ||y - D x||^2 + rho ||x||_1`` and its classical solvers.

Signals are rows: ``y`` is (B, n), codes ``x`` are (B, m), the dictionary ``D`` is (n, m), so ``D x`` is ``x @ D.T``.
All functions are batched over signals and built from ordinary torch ops with closed-form gradients, so they are
differentiable w.r.t. ``x`` (constraint gradients flow into a LISTA model without ``autograd.functional.jacobian``).
ISTA/FISTA use the standard step ``1 / ||D||_2^2`` with the *spectral* norm (the robust-unrolling code used the
Frobenius norm, a much smaller step).
"""

from __future__ import annotations

import torch

from surf.problems.proximal import Perturb, proximal_gradient


def soft_threshold(v: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """prox of ``threshold * ||.||_1``: ``sign(v) max(|v| - threshold, 0)``."""
    return torch.sign(v) * torch.relu(v.abs() - threshold)


def ls_gradient(x: torch.Tensor, y: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    """Gradient of the least-squares part ``g(x) = 1/2 ||y - D x||^2``: ``D^T (D x - y)`` -> (B, m)."""
    return (x @ dictionary.T - y) @ dictionary


def objective(x: torch.Tensor, y: torch.Tensor, dictionary: torch.Tensor, rho: float) -> torch.Tensor:
    """``F(x) = 1/2 ||y - D x||^2 + rho ||x||_1`` per signal -> (B,)."""
    residual = y - x @ dictionary.T
    return 0.5 * residual.pow(2).sum(-1) + rho * x.abs().sum(-1)


def step_size(dictionary: torch.Tensor) -> float:
    """ISTA step ``1 / L`` with ``L = ||D||_2^2``, the Lipschitz constant of ``grad g`` (spectral norm)."""
    return 1.0 / torch.linalg.matrix_norm(dictionary.double(), ord=2).item() ** 2


def prox_gradient_residual(x: torch.Tensor, y: torch.Tensor, dictionary: torch.Tensor, rho: float,
                           eta: float) -> torch.Tensor:
    """Gradient mapping ``G_eta(x) = (x - prox_{eta rho ||.||_1}(x - eta grad g(x))) / eta`` -> (B, m).

    ``G_eta(x) = 0`` exactly at a LASSO optimum; it is the proximal analogue of the gradient norm.
    """
    return (x - soft_threshold(x - eta * ls_gradient(x, y, dictionary), eta * rho)) / eta


def kkt_violation(x: torch.Tensor, y: torch.Tensor, dictionary: torch.Tensor, rho: float) -> torch.Tensor:
    """Largest violation of the LASSO optimality conditions per signal -> (B,).

    With ``c = D^T (y - D x)``: ``c_i = rho sign(x_i)`` where ``x_i != 0``, and ``|c_i| <= rho`` where ``x_i = 0``.
    """
    correlation = -ls_gradient(x, y, dictionary)
    active = x != 0
    on_support = (correlation - rho * torch.sign(x)).abs()
    off_support = torch.relu(correlation.abs() - rho)
    return torch.where(active, on_support, off_support).amax(-1)


def ista(y: torch.Tensor, dictionary: torch.Tensor, rho: float, iters: int,
         perturb: Perturb | None = None) -> list[torch.Tensor]:
    """ISTA from ``x_0 = 0``: ``x_k = soft(x_{k-1} - eta grad g(x_{k-1}), eta rho)``; returns ``[x_0..x_iters]``."""
    return _lasso_prox_gradient(y, dictionary, rho, iters, False, perturb)


def fista(y: torch.Tensor, dictionary: torch.Tensor, rho: float, iters: int,
          perturb: Perturb | None = None) -> list[torch.Tensor]:
    """FISTA (Beck & Teboulle 2009) from ``x_0 = 0``; returns ``[x_0..x_iters]``."""
    return _lasso_prox_gradient(y, dictionary, rho, iters, True, perturb)


def _lasso_prox_gradient(y: torch.Tensor, dictionary: torch.Tensor, rho: float, iters: int, accelerated: bool,
                         perturb: Perturb | None) -> list[torch.Tensor]:
    """The shared proximal gradient loop on the LASSO, step ``1 / ||D||_2^2``."""
    return proximal_gradient(y.new_zeros(y.shape[0], dictionary.shape[1]),
                             lambda x: ls_gradient(x, y, dictionary),
                             lambda v, eta: soft_threshold(v, eta * rho), step_size(dictionary), iters,
                             accelerated, perturb)


@torch.no_grad()
def solve_lasso(y: torch.Tensor, dictionary: torch.Tensor, rho: float, max_iters: int = 5000,
                tol: float = 1e-6, check_every: int = 25) -> torch.Tensor:
    """The LASSO optimum ``x*`` per signal: FISTA in float64 until ``||G_eta(x)|| <= tol`` or ``max_iters``.

    Every ``check_every`` iterations, converged signals are set aside (FISTA's momentum schedule is shared by all
    signals, so the remaining ones are unaffected); the cost is then set by the slowest few signals only.
    """
    y64, d64 = y.double(), dictionary.double()
    eta = step_size(d64)
    result = y64.new_zeros(y.shape[0], dictionary.shape[1])
    rows = torch.arange(y.shape[0])
    x = z = result.clone()
    t = 1.0
    for k in range(1, max_iters + 1):
        x_next = soft_threshold(z - eta * ls_gradient(z, y64[rows], d64), eta * rho)
        t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        z = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, t = x_next, t_next
        if k % check_every == 0 or k == max_iters:
            done = prox_gradient_residual(x, y64[rows], d64, rho, eta).norm(dim=-1) <= tol
            result[rows] = x
            rows, x, z = rows[~done], x[~done], z[~done]
            if len(rows) == 0:
                break
    return result.to(y.dtype)
