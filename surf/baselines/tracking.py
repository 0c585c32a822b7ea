"""Gradient tracking, DIGing (Nedic, Olshevsky & Shi, SIAM J. Optim. 2017, eq. 3):

    x(r) = W x(r-1) - alpha y(r-1)
    y(r) = W y(r-1) + grad f(x(r)) - grad f(x(r-1)),          y(0) = grad f(x(0))

y_i tracks the network-average gradient, so with a constant step alpha small enough DIGing converges linearly to
the exact minimizer of sum_i f_i (for strongly convex f_i); DGD with a constant step does not. W must be doubly
stochastic (the sum of y stays the sum of gradients): W is each step's S when it is symmetric doubly stochastic,
otherwise the Metropolis weights of its links (:class:`surf.baselines.common.DoublyStochastic`). Each round every
agent sends two vectors, x and y, on channels "w" and "y".
"""

from __future__ import annotations

import torch

from surf.baselines.common import DoublyStochastic, Problem, State, hyper, mix
from surf.graphs.network import NetworkStep


class DIGing:
    """Grid column ``step`` (alpha); full local gradients."""

    communicates = True

    def __init__(self, problem: Problem, step: torch.Tensor) -> None:
        self.problem, self.step, self.mixing = problem, step, DoublyStochastic()

    def init(self, w: torch.Tensor) -> State:
        grad = self.problem.gradient(w, 0)
        return {"w": w, "y": grad, "grad": grad}

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        step = self.mixing(step)
        w = mix(step, state["w"], "w") - hyper(self.step, state["w"]) * state["y"]
        grad = self.problem.gradient(w, r)
        return {"w": w, "y": mix(step, state["y"], "y") + grad - state["grad"], "grad": grad}
