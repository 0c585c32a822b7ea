"""Dual variables lambda in R^L_+ and their projected dual ascent ``lambda <- [lambda + eta c]_+`` (paper eq. 5)."""

from __future__ import annotations

import torch


class DualVariables:
    """One multiplier per constraint, kept in float64 on the CPU (the same on every worker of a distributed run)."""

    def __init__(self, num_constraints: int, step_size: float, cap: float | None = None) -> None:
        self.value = torch.zeros(num_constraints, dtype=torch.float64)
        self.step_size, self.cap = step_size, cap

    def update(self, slacks: torch.Tensor) -> torch.Tensor:
        """One dual ascent step with the (task-averaged) slacks (eq. 5); returns the new lambda."""
        raised = self.value + self.step_size * slacks.detach().to(torch.float64).cpu()
        self.value = raised.clamp(min=0.0, max=self.cap)
        return self.value

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"value": self.value.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.value = state["value"].clone().to(torch.float64)
