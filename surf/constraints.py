"""Layer-wise descent constraints and their dual variables (paper eq. 3-5, Algorithm 1).

CI  (SURF):  ``E ||grad f(W_l; B_l)|| - (1 - eps) E ||grad f(W_{l-1}; B_{l-1})|| <= 0``   for l = 1..L
CII (TSP):   ``E ||W_l - W*|| - (1 - eps) E ||W_{l-1} - W*|| <= 0``                         (distance to the optimum)

Norms are Frobenius norms of all agents' matrices stacked (one scalar per layer and task, as in the paper).
Forms: ``difference`` (paper), ``ratio`` (authors' code: a_l / a_{l-1} - (1 - eps)) and ``normalized`` (the
difference divided by the detached a_{l-1}: the ratio's scale with the difference's gradient).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from surf.config import ConstraintConfig
from surf.problems.softmax import agent_gradients, pooled_optimum, stacked_norm
from surf.unrolled import Trajectory, batch_indices, gather_batch

if TYPE_CHECKING:
    from surf.data.tasks import Task


def gradient_norms(
    trajectory: Trajectory,
    task: Task,
    gradient_on: str,
    seed: int = 0,
    agents: torch.Tensor | None = None,
) -> torch.Tensor:
    """``||grad f(W_l; B)||_F`` for l = 0..L -> (L+1,), differentiable w.r.t. the trajectory.

    gradient_on: ``batch`` = the batch B_l that produced W_l (paper; W_0 uses B_1), ``next_batch`` = B_{l+1}
    (authors' code; W_L uses a fresh batch), ``full`` = the agent's whole local training set.
    """
    w = torch.stack(trajectory.weights)  # (L+1, N, d+1, C)
    if gradient_on == "full":
        grads = agent_gradients(w, task.x_train, task.y_train)
    else:
        batches = list(trajectory.batches)
        if gradient_on == "batch":
            batches = [batches[0]] + batches
        else:
            fresh = batch_indices(task, seed, len(batches) + 1, batches[0].shape[1])
            batches = batches + [fresh]
        xb, yb = gather_batch(task.x_train, task.y_train, torch.stack(batches, dim=1))  # (N, L+1, B, ...)
        grads = agent_gradients(w, xb.transpose(0, 1), yb.transpose(0, 1))
    return stacked_norm(grads, agents)


def distances_to_optimum(
    trajectory: Trajectory, optimum: torch.Tensor, agents: torch.Tensor | None = None
) -> torch.Tensor:
    """``||W_l - 1 w*^T||_F`` for l = 0..L -> (L+1,): every agent's distance to the pooled optimum."""
    w = torch.stack(trajectory.weights)
    return stacked_norm(w - optimum, agents)


def task_optimum(task: Task, l2: float) -> torch.Tensor:
    """The L2-regularized optimum of the task's pooled training problem (what CII measures distance to)."""
    return pooled_optimum(task.x_pool, task.y_pool, task.num_classes, l2)


def descent_constraints(values: torch.Tensor, form: str, epsilon: float) -> torch.Tensor:
    """Constraint slacks c_l (<= 0 means satisfied) for l = 1..L from per-layer values a_0..a_L (eq. 3)."""
    now, before = values[1:], values[:-1]
    if form == "difference":
        return now - (1.0 - epsilon) * before
    if form == "ratio":
        return now / before - (1.0 - epsilon)
    if form == "normalized":
        return (now - (1.0 - epsilon) * before) / before.detach()
    raise ValueError(f"unknown constraint form {form!r}")


def constraint_values(
    trajectory: Trajectory, task: Task, cfg: ConstraintConfig, seed: int, agents: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer measured values a_0..a_L (gradient norms or distances) and the slacks c_1..c_L."""
    if cfg.kind == "distance":
        values = distances_to_optimum(trajectory, task_optimum(task, cfg.optimum_l2), agents)
    else:
        values = gradient_norms(trajectory, task, cfg.gradient_on, seed, agents)
    return values, descent_constraints(values, cfg.form, cfg.epsilon)


class DualVariables:
    """lambda in R^L_+, updated by projected dual ascent ``lambda <- [lambda + eta c]_+`` (Algorithm 1)."""

    def __init__(self, num_constraints: int, step_size: float, cap: float | None = None) -> None:
        self.value = torch.zeros(num_constraints, dtype=torch.float64)
        self.step_size, self.cap = step_size, cap

    def update(self, slacks: torch.Tensor) -> torch.Tensor:
        """One dual ascent step with the (task-averaged) slacks; returns the new lambda."""
        raised = self.value + self.step_size * slacks.detach().to(torch.float64).cpu()
        self.value = raised.clamp(min=0.0, max=self.cap)
        return self.value

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"value": self.value.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.value = state["value"].clone().to(torch.float64)
