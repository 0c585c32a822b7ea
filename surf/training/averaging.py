"""Exponential moving average of the meta-parameters (Polyak averaging), and the primal learning-rate schedule.

Both damp the meta-training's late excursions: with a constant Adam step the primal iterate Theta keeps moving after
the validation loss has levelled off, and now and then it leaves the good region for hundreds of steps (the dual
variables then grow to answer the violated constraints). ``trainer.ema = beta`` keeps

    Theta_bar_t = beta Theta_bar_{t-1} + (1 - beta) Theta_t,    Theta_bar_0 = Theta_0    (Polyak & Juditsky 1992)

and validates, selects and saves Theta_bar instead of Theta (training itself steps Theta as before); buffers are
copied, not averaged. ``trainer.lr_schedule = cosine`` anneals Adam's step to 0 over ``trainer.steps``:
``lr_t = lr (1 + cos(pi t / T)) / 2`` (Loshchilov & Hutter 2017, without restarts), a pure function of the step, so a
resumed run takes exactly the steps of an uninterrupted one.
"""

from __future__ import annotations

import math

import torch


def snapshot(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of a state dict that later steps do not change."""
    return {key: value.detach().clone() for key, value in state.items()}


def cosine_lr(base: float, step: int, total: int) -> float:
    """Adam's step size at meta-step ``step`` (0-based) of ``total`` under cosine annealing to 0."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


class ParameterAverage:
    """``Theta_bar`` of a module: ``update`` after every optimizer step, ``state_dict`` is a model state dict."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay={decay} must be in (0, 1)")
        self.decay = decay
        self.parameters = {name for name, value in model.named_parameters() if value.is_floating_point()}
        self.average = snapshot(model.state_dict())

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """``Theta_bar <- beta Theta_bar + (1 - beta) Theta`` for the parameters; buffers copied."""
        for key, value in model.state_dict().items():
            if key in self.parameters:
                self.average[key].lerp_(value, 1.0 - self.decay)
            else:
                self.average[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.average = snapshot(state)
