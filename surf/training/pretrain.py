"""The optional pretraining stage a family may ask for before meta-training (``surf.families.base.Pretraining``),
run by ``MetaTrainer.train`` once, on a fresh model: plain Adam on the family's loss, deterministic given the seed
(the family keys its batches by step). A resumed run skips it (its checkpoint already holds the pretrained model)."""

from __future__ import annotations

import math

import torch

from surf.families.base import Pretraining
from surf.utils.errors import TrainingError


def pretrain(stage: Pretraining) -> list[float]:
    """Minimize ``stage.loss`` for ``stage.steps`` Adam steps; returns the losses."""
    optimizer = torch.optim.Adam(stage.parameters, lr=stage.lr)
    losses = []
    for step in range(stage.steps):
        loss = stage.loss(step)
        if not math.isfinite(loss.item()):
            raise TrainingError(f"non-finite pretraining loss at step {step}; lower the pretraining learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
