"""EXTRA, an exact first-order algorithm (Shi, Ling, Wu & Yin, SIAM J. Optim. 2015, eq. 2.13 / Algorithm 1):

    x(1)   = W x(0) - alpha grad f(x(0))
    x(r+1) = (I + W) x(r) - W~ x(r-1) - alpha [grad f(x(r)) - grad f(x(r-1))],      W~ = (I + W) / 2

It converges to the exact minimizer of sum_i f_i with a constant step alpha (alpha < 2 lambda_min(W~) / L for
convex, smooth f_i). EXTRA requires a symmetric doubly-stochastic W: each step's S when it already is one,
otherwise the Metropolis weights of its links (:class:`surf.baselines.common.DoublyStochastic`). One vector per
agent per round: W x(r-1) was received in the previous round and is kept, so round r only sends x(r).
"""

from __future__ import annotations

import torch

from surf.baselines.common import DoublyStochastic, Problem, State, hyper, mix
from surf.graphs.network import NetworkStep


class EXTRA:
    """Grid column ``step`` (alpha); full local gradients."""

    communicates = True

    def __init__(self, problem: Problem, step: torch.Tensor) -> None:
        self.problem, self.step, self.mixing = problem, step, DoublyStochastic()

    def init(self, w: torch.Tensor) -> State:
        # before round 1 there is no x(-1): state it so that the general update reduces to x(1) = W x(0) - a g(0)
        zero = torch.zeros_like(w)
        first = torch.ones(*w.shape[:2], 1, 1, dtype=w.dtype, device=w.device)  # per agent: no round taken yet
        return {"w": w, "previous": zero, "mixed_previous": zero, "grad": zero, "first": first}

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        w, alpha = state["w"], hyper(self.step, state["w"])
        mixed = mix(self.mixing(step), w)
        grad = self.problem.gradient(w, r)
        first = state["first"]
        tilde_previous = 0.5 * (state["previous"] + state["mixed_previous"])  # W~ x(r-1)
        general = w + mixed - tilde_previous - alpha * (grad - state["grad"])  # eq. 2.13
        start = mixed - alpha * grad  # x(1)
        new = first * start + (1.0 - first) * general
        return {"w": new, "previous": w, "mixed_previous": mixed, "grad": grad, "first": torch.zeros_like(first)}
