"""Decentralized gradient descent (paper eq. 10), optionally with heavy-ball momentum.

    w_i(r) = sum_j S_ij w_j(r-1) - beta grad f_i(w_i(r-1)) + mu (w_i(r-1) - w_i(r-2))          (eq. 10; mu = 0: DGD)

One round = one communication (S @ W) + one local full-gradient step. A whole grid of (beta, mu) pairs runs at
once as a leading batch dimension, so tuning costs one vectorized pass per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from surf.data import Task
from surf.network import Network, Schedule
from surf.problems.softmax import agent_accuracies, agent_gradients, agent_losses


@dataclass
class DGDCurves:
    """Held-out accuracy and loss per round, shape (G, rounds + 1) for a grid of G settings (round 0 = W_0)."""

    accuracy: torch.Tensor
    loss: torch.Tensor


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
) -> DGDCurves:
    """Run DGD / heavy-ball DGD for every (steps[g], momenta[g]) pair from the same W_0."""
    grid = steps.shape[0]
    beta = steps.to(w0).view(grid, 1, 1, 1)
    mu = momenta.to(w0).view(grid, 1, 1, 1)
    has_data = torch.ones(w0.shape[0], 1, 1, device=w0.device, dtype=w0.dtype)
    if agents is not None:  # star mode: the server holds no data and takes no gradient step
        has_data = torch.zeros_like(has_data).index_fill_(0, agents, 1.0)
    w = w0.unsqueeze(0).expand(grid, *w0.shape).clone()
    previous = w.clone()
    network = Network(shift, schedule, async_mode)
    accuracy, loss = [_metric(agent_accuracies, w, task, agents)], [_metric(agent_losses, w, task, agents)]
    for r in range(1, rounds + 1):
        step = network.step(r)
        mixed = step.aggregate(w.transpose(0, 1)).transpose(0, 1)  # agents lead for the sparse matmul
        grad = agent_gradients(w, task.x_train, task.y_train) * has_data
        new = mixed - beta * grad + mu * (w - previous)
        previous, w = w, step.keep(new, w, agent_dim=1)
        accuracy.append(_metric(agent_accuracies, w, task, agents))
        loss.append(_metric(agent_losses, w, task, agents))
    return DGDCurves(torch.stack(accuracy, dim=1), torch.stack(loss, dim=1))


def _metric(fn: Callable[..., torch.Tensor], w: torch.Tensor, task: Task, agents: torch.Tensor | None) -> torch.Tensor:
    values = fn(w, task.x_test, task.y_test)  # (G, N)
    if agents is not None:
        values = values[:, agents]
    return torch.nan_to_num(values, nan=float("inf")).mean(dim=1)
