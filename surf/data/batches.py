"""Keyed per-agent randomness of a task: the initial models W_0 and the fresh mini-batch of every agent at every
layer, plus the gather of per-agent samples. Every draw is keyed by what it is for, so the vectorized engine, a
Flower node and a Ray worker draw the same numbers.
"""

from __future__ import annotations

import torch

from surf.data.tasks import Task, TaskBatch
from surf.utils.seeding import torch_generator


def initial_weights(task: Task | TaskBatch, seed: int, std: float) -> torch.Tensor:
    """Random W_0 ~ N(0, std^2), keyed by the task (the same for a task and its relabelled twin)."""
    if isinstance(task, TaskBatch):
        return torch.cat([initial_weights(part, seed, std) for part in task.parts])
    gen = torch_generator(seed, "w0", *task.key)
    shape = (task.num_agents, task.num_features, task.num_classes)
    return (std * torch.randn(shape, generator=gen)).to(task.x_train.device)


def batch_indices(task: Task | TaskBatch, seed: int, layer: int, batch_size: int) -> torch.Tensor:
    """Fresh i.i.d. mini-batch indices (with replacement) for every agent at ``layer`` -> (N, B), keyed."""
    if isinstance(task, TaskBatch):
        return torch.cat([batch_indices(part, seed, layer, batch_size) for part in task.parts])
    gen = torch_generator(seed, "batch", *task.key, layer)
    idx = torch.randint(0, task.x_train.shape[1], (task.num_agents, batch_size), generator=gen)
    return idx.to(task.x_train.device)


def gather_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent samples ``x[i, idx[i]]``: (N, m, d+1), (N, m), (N, ..., B) -> (N, ..., B, d+1), (N, ..., B)."""
    rows = torch.arange(x.shape[0], device=x.device).view(-1, *([1] * (idx.dim() - 1)))
    return x[rows, idx], y[rows, idx]
