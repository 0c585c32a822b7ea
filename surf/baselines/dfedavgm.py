"""DFedAvgM: decentralized FedAvg with momentum (Sun, Li & Wang, IEEE TPDS 2022, Algorithm 1).

Each round every agent runs E local heavy-ball SGD steps from its current model, then averages with its neighbours:

    y^{0} = y^{-1} = w_i(r-1)
    y^{s+1} = y^{s} - eta g_i(y^{s}; B_{r,s}) + theta (y^{s} - y^{s-1}),   s = 0..E-1             (local momentum)
    w_i(r) = sum_j S_ij y_j^{E}                                                                    (one gossip round)

The momentum buffer restarts every round, as in the paper. (The SURF authors' code computed its "momentum" as the
difference of two clones of the same tensor, i.e. identically 0; here theta is a real, tuned parameter.)
"""

from __future__ import annotations

import torch

from surf.baselines.common import Problem, State, hyper, mix
from surf.graphs.network import NetworkStep


class DFedAvgM:
    """Grid columns ``step`` (eta) and ``momentum`` (theta); ``local_steps`` E is fixed."""

    communicates = True

    def __init__(self, problem: Problem, step: torch.Tensor, momentum: torch.Tensor, local_steps: int) -> None:
        self.problem, self.step, self.momentum, self.local_steps = problem, step, momentum, local_steps

    def init(self, w: torch.Tensor) -> State:
        return {"w": w}

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        eta, theta = hyper(self.step, state["w"]), hyper(self.momentum, state["w"])
        y = previous = state["w"]
        for s in range(self.local_steps):
            y, previous = y - eta * self.problem.gradient(y, r, s) + theta * (y - previous), y
        return {"w": mix(step, y)}
