"""Per-layer measures of a sparse-coding trajectory ``[x_0..x_L]``: the CI/CII constraint values, NMSE, objective.

Constraint values are **batch means of per-signal norms** (one scalar per layer, like SURF's CI), which then go
through the family-agnostic ``surf.constraints.descent_constraints`` (difference / ratio / normalized forms). The
robust-unrolling code instead averages per-signal ratios; with the ratio form the two differ by Jensen's gap.

CI  (descent in the objective's stationarity measure):
  ``prox_residual``: ``||G_eta(x_l)||`` with the gradient mapping ``G_eta(x) = (x - prox(x - eta grad g(x))) / eta``,
  which vanishes exactly at the LASSO optimum (default);
  ``ls_gradient``: ``||D^T (D x_l - y)||``, the least-squares gradient without the l1 term (the authors' choice,
  which does not vanish at the LASSO optimum).
CII (distance to the optimum): ``||x_l - x*||``. ``objective_nonincrease_fraction`` is the shared
``surf.constrained.constraints.nonincrease_fraction`` applied to per-signal objectives.
"""

from __future__ import annotations

import torch

from surf.constrained.constraints import nonincrease_fraction
from surf.problems.lasso import ls_gradient, objective, prox_gradient_residual

objective_nonincrease_fraction = nonincrease_fraction  # applied to per-signal LASSO objectives (L+1, B)


def ci_values(trajectory: list[torch.Tensor], y: torch.Tensor, dictionary: torch.Tensor, rho: float, eta: float,
              measure: str) -> torch.Tensor:
    """CI values ``a_l = mean_b ||grad-like(x_l^b)||`` for l = 0..L -> (L+1,), differentiable."""
    x = torch.stack(trajectory)  # (L+1, B, m)
    if measure == "ls_gradient":
        grads = ls_gradient(x, y, dictionary)
    else:
        grads = prox_gradient_residual(x, y, dictionary, rho, eta)
    return grads.norm(dim=-1).mean(-1)


def cii_values(trajectory: list[torch.Tensor], x_star: torch.Tensor) -> torch.Tensor:
    """CII values ``a_l = mean_b ||x_l^b - x*^b||`` for l = 0..L -> (L+1,), differentiable."""
    return (torch.stack(trajectory) - x_star).norm(dim=-1).mean(-1)


def nmse_db(trajectory: list[torch.Tensor], x_star: torch.Tensor) -> torch.Tensor:
    """``NMSE_l = 10 log10( sum_b ||x_l^b - x*^b||^2 / sum_b ||x*^b||^2 )`` in dB per layer -> (L+1,).

    The ratio of batch totals (Chen et al. 2018's E||x - x*||^2 / E||x*||^2); the reference is the LASSO optimum.
    """
    errors = (torch.stack(trajectory) - x_star).pow(2).sum((-1, -2))
    return 10.0 * torch.log10(errors / x_star.pow(2).sum().clamp_min(1e-30))


def layer_objectives(trajectory: list[torch.Tensor], y: torch.Tensor, dictionary: torch.Tensor,
                     rho: float) -> torch.Tensor:
    """Per-signal LASSO objective per layer ``F(x_l^b)`` -> (L+1, B)."""
    return objective(torch.stack(trajectory), y, dictionary, rho)
