"""The constrained meta-learning problem of one run: slacks -> Lagrangian -> dual step (paper eq. 3-5).

    L(Theta, lambda) = mean_tasks[ f(W_L) ] + sum_l lambda_l * mean_tasks[ c_l ]          (eq. 4)

With ``constraints.kind = none`` (standard unrolling) the Lagrangian is the objective and the duals never move; the
slacks are still computed for the diagnostics.
"""

from __future__ import annotations

import torch

from surf.config import ConstraintConfig
from surf.constrained.constraints import descent_constraints
from surf.constrained.duals import DualVariables


class DescentFormulation:
    """Layer-wise descent constraints with their multipliers, from ``cfg`` (kind, form, epsilon, dual step, cap)."""

    def __init__(self, cfg: ConstraintConfig, num_constraints: int) -> None:
        self.cfg = cfg
        self.duals = DualVariables(num_constraints, cfg.dual_lr, cfg.dual_max)

    @property
    def constrained(self) -> bool:
        return self.cfg.kind != "none"

    def slacks(self, values: torch.Tensor) -> torch.Tensor:
        """c_1..c_L from measured a_0..a_L (eq. 3), in the configured form and margin."""
        return descent_constraints(values, self.cfg.form, self.cfg.epsilon)

    def lagrangian(self, objective: torch.Tensor, slacks: torch.Tensor) -> torch.Tensor:
        """``objective + sum_l lambda_l c_l`` (eq. 4); the objective alone when unconstrained."""
        if not self.constrained:
            return objective
        return objective + (self.duals.value.to(slacks.device, slacks.dtype) * slacks).sum()

    def dual_step(self, slacks: torch.Tensor) -> None:
        """Projected dual ascent with the task-averaged slacks (eq. 5); nothing when unconstrained."""
        if self.constrained:
            self.duals.update(slacks)
