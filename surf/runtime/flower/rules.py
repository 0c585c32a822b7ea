"""What an agent does in one layer (U-DGD) or one round (DGD, DSGD), written once for every runtime.

A rule gives the graph-filter taps of a step (``sum_k h_k S^k W``, eq. 12: K hops = K communication rounds) and the
agent-local update subtracted from the filter output (eq. 11 for U-DGD, eq. 10 for DGD). The vectorized engine and a
Flower node call the same functions: the node on the rows of its own agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from surf.data.batches import gather_batch
from surf.models.udgd import UnrolledDGD
from surf.problems.softmax import agent_gradients


class UnrolledRule:
    """U-DGD layer l: taps ``h_{., l}`` and the learned local step ``step_l`` (:meth:`UnrolledDGD.local_step`)."""

    def __init__(self, model: UnrolledDGD) -> None:
        self.model = model.eval()
        self.steps, self.hops = model.cfg.layers, model.cfg.hops
        self.batch_size = model.batch_size

    def taps(self, step: int) -> torch.Tensor:
        return self.model.taps[step - 1].detach()

    @torch.no_grad()
    def update(self, step: int, w: torch.Tensor, delta: torch.Tensor, filtered: torch.Tensor,
               x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.model.local_step(step - 1, w, delta, filtered, x, y, idx)[0]  # safeguarded as model.safeguard


@dataclass
class GradientRule:
    """DGD / heavy-ball DGD (full local gradient) or DSGD (keyed mini-batch gradient): one hop with taps [0, 1],
    update ``beta g - mu delta`` so that ``w <- S w - beta g + mu (w - w_prev)`` (eq. 10)."""

    step_size: float
    momentum: float
    steps: int
    stochastic: bool
    batch_size: int
    hops: int = 1

    def taps(self, step: int) -> torch.Tensor:
        return torch.tensor([0.0, 1.0])

    def update(self, step: int, w: torch.Tensor, delta: torch.Tensor, filtered: torch.Tensor,
               x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.stochastic:
            x, y = gather_batch(x, y, idx)
        return self.step_size * agent_gradients(w, x, y) - self.momentum * delta
