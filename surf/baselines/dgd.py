"""Decentralized gradient descent (paper eq. 10), optionally with heavy-ball momentum or mini-batch gradients.

    w_i(r) = sum_j S_ij w_j(r-1) - beta g_i(w_i(r-1)) + mu (w_i(r-1) - w_i(r-2))          (eq. 10; mu = 0: DGD)

g_i is the full local gradient (DGD, Nedic & Ozdaglar 2009) or a fresh keyed mini-batch gradient (DSGD, Lian et al.
2017). One round = one communication (S @ W) + one local step. With a constant step DGD converges only to an
O(beta)-neighbourhood of the optimum; a decaying step ``beta_r = beta / (1 + r)^decay`` (decay in (1/2, 1]) removes
that bias (Yuan, Ling & Yin 2016). A whole grid of settings runs at once as a leading batch dimension.
"""

from __future__ import annotations

import torch

from surf.baselines.common import Curves, Problem, State, hyper, mix, run_rounds
from surf.data.tasks import Task
from surf.graphs.network import NetworkStep, Schedule


class DGD:
    """DGD / heavy-ball DGD / DSGD with grid columns ``step``, ``momentum`` (and a fixed step ``decay``)."""

    communicates = True

    def __init__(self, problem: Problem, step: torch.Tensor, momentum: torch.Tensor, decay: float = 0.0) -> None:
        self.problem, self.step, self.momentum, self.decay = problem, step, momentum, decay

    def init(self, w: torch.Tensor) -> State:
        return {"w": w, "previous": w.clone()}

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        w = state["w"]
        beta = hyper(self.step, w) / (1.0 + r) ** self.decay
        # eq. 10 added in place into the mixing's fresh output: the same arithmetic in the same order, two fewer
        # temporaries of the whole grid (G, N, d+1, C)
        new = mix(step, w)
        new -= beta * self.problem.gradient(w, r)
        new += (w - state["previous"]).mul_(hyper(self.momentum, w))
        return {"w": new, "previous": w}


def run_dgd(
    task: Task,
    shift: torch.Tensor,
    w0: torch.Tensor,
    rounds: int,
    steps: torch.Tensor,
    momenta: torch.Tensor,
    agents: torch.Tensor | None = None,
    schedule: Schedule | None = None,
    async_mode: str = "stale",
    *,
    seed: int = 0,
    batch: int | None = None,
    decay: float = 0.0,
    l2: float = 0.0,
) -> Curves:
    """Run DGD / heavy-ball DGD for every (steps[g], momenta[g]) pair from the same W_0 (``batch``: DSGD)."""
    problem = Problem(task, seed, agents, batch, l2)
    return run_rounds(DGD(problem, steps, momenta, decay), problem, w0, rounds, steps.shape[0], schedule,
                      async_mode, shift)
