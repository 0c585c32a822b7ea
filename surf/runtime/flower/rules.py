"""What an agent does in one layer (U-DGD) or one round (DGD, DSGD), written once for every runtime.

A rule gives the graph-filter taps of a step (``sum_k h_k S^k W``, eq. 12: K hops = K communication rounds) and the
agent-local update subtracted from the filter output (eq. 11 for U-DGD, eq. 10 for DGD), with the new state of the
agent-local step features (``model.features: [adam]``). The vectorized engine and a
Flower node call the same functions: the node on the rows of its own agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from surf.data.batches import gather_batch
from surf.models.features import initial_state
from surf.models.udgd import UnrolledDGD
from surf.problems.softmax import agent_gradients

Features = dict[str, torch.Tensor]  # per-agent state of agent-local step features (surf.models.features)


class UnrolledRule:
    """U-DGD layer l: taps ``h_{., l}`` and the learned local step ``step_l`` (:meth:`UnrolledDGD.local_step`)."""

    def __init__(self, model: UnrolledDGD) -> None:
        self.model = model.eval()
        self.steps, self.hops = model.cfg.layers, model.cfg.hops
        self.batch_size = model.batch_size
        self.uses_batches = model.uses_batches  # False: the step never reads the layer's mini-batch, none is drawn

    def taps(self, step: int) -> torch.Tensor:
        return self.model.taps[step - 1].detach()

    def initial_features(self, w: torch.Tensor) -> Features:
        """The agent-local features' state before layer 1 (``model.features``; the Flower runtime refuses features
        that send extra messages)."""
        return initial_state(self.model.cfg.features, w)

    @torch.no_grad()
    def update(self, step: int, w: torch.Tensor, delta: torch.Tensor, filtered: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor, idx: torch.Tensor | None, features: Features,
               gradient: torch.Tensor | None = None) -> tuple[torch.Tensor, Features]:
        """The update and the features' new state; ``gradient``: the agents' full local gradient at ``w`` if the
        caller has it (used where the step takes the full gradient, instead of computing it again)."""
        if self.uses_batches:
            gradient = None
        extra, grad, features = self.model.step_features(step - 1, w, features, x, y, idx, gradient=gradient)
        grad = gradient if grad is None else grad
        update = self.model.local_step(step - 1, w, delta, filtered, x, y, idx, extra, grad)[0]  # as model.safeguard
        return update, features


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

    @property
    def uses_batches(self) -> bool:
        return self.stochastic

    def taps(self, step: int) -> torch.Tensor:
        return torch.tensor([0.0, 1.0])

    def initial_features(self, w: torch.Tensor) -> Features:
        return {}

    def update(self, step: int, w: torch.Tensor, delta: torch.Tensor, filtered: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor, idx: torch.Tensor | None, features: Features,
               gradient: torch.Tensor | None = None) -> tuple[torch.Tensor, Features]:
        if self.stochastic:
            x, y = gather_batch(x, y, idx)
            gradient = None
        gradient = agent_gradients(w, x, y) if gradient is None else gradient
        return self.step_size * gradient - self.momentum * delta, features
