"""Centralized training, the ceiling: one model trained on the task's pooled training data (no communication).

    w(r) = w(r-1) - beta grad F(w(r-1)) + mu (w(r-1) - w(r-2)),     F(w) = (1/n) sum_{i data agents} f_i(w)

Every agent holds m samples, so F is the mean cross-entropy over the pooled samples (plus the same L2 term). It
starts from the agents' mean W_0 and is evaluated, like every method, on each data agent's held-out samples; the
star-graph "relative accuracy" of the paper (Fig. 2) is a method's accuracy divided by this one's.
"""

from __future__ import annotations

import torch

from surf.baselines.common import Problem, State, hyper


class Centralized:
    """Heavy-ball gradient descent on the pooled objective; grid columns ``step`` and ``momentum``."""

    communicates = False

    def __init__(self, problem: Problem, step: torch.Tensor, momentum: torch.Tensor) -> None:
        self.problem, self.step, self.momentum = problem, step, momentum
        has_data = problem.has_data
        self.weights = (has_data / has_data.sum()).unsqueeze(0)  # (1, N, 1, 1): mean over data agents

    def _pool(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.weights).sum(dim=1, keepdim=True).expand_as(z)

    def init(self, w: torch.Tensor) -> State:
        w = self._pool(w)
        return {"w": w, "previous": w.clone()}

    def round(self, state: State, step: None, r: int) -> State:
        w = state["w"]
        grad = self._pool(self.problem.gradient(w, r))
        new = w - hyper(self.step, w) * grad + hyper(self.momentum, w) * (w - state["previous"])
        return {"w": new, "previous": w}
