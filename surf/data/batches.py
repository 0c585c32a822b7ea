"""Keyed per-agent randomness of a task: the initial models W_0 and the fresh mini-batch of every agent at every
layer, plus the gather of per-agent samples.

Every draw is keyed by what it is for, down to the agent: agent i's W_0 depends on ``(seed, "w0", task, i)`` and its
mini-batch at layer l on ``(seed, "batch", task, l, i)`` only (``surf.utils.seeding.keyed_words``). A task that holds
only some agents' rows (``Task.agents``, a Flower node's share) draws exactly their numbers; the vectorized engine
draws the same numbers for all N agents in one batched evaluation.
"""

from __future__ import annotations

import torch

from surf.data.tasks import Task, TaskBatch
from surf.utils.seeding import keyed_integers, keyed_normal


def agent_ids(task: Task) -> torch.Tensor:
    """The global ids of the task's agent rows (``Task.agents``; all of 0..N-1 for a full task)."""
    agents = getattr(task, "agents", None)
    return agents if agents is not None else torch.arange(task.x_train.shape[0])


def initial_weights(task: Task | TaskBatch, seed: int, std: float) -> torch.Tensor:
    """W_0 ~ N(0, std^2) of the task's agents -> (N, d+1, C), keyed per agent by the task (the same for a task and
    its relabelled twin); a task batch stacks its tasks' draws."""
    if isinstance(task, TaskBatch):
        return torch.cat([initial_weights(part, seed, std) for part in task.parts])
    agents = agent_ids(task)
    shape = (agents.shape[0], task.x_train.shape[-1], task.num_classes)
    w = std * keyed_normal(seed, ("w0", *task.key), agents, shape[1] * shape[2]).reshape(shape)
    return w.to(task.x_train.device)


def batch_indices(task: Task | TaskBatch, seed: int, layer: int, batch_size: int, *stream: object) -> torch.Tensor:
    """Fresh i.i.d. mini-batch indices (with replacement) of every agent at ``layer`` -> (N, B), keyed per agent;
    ``stream`` keys further draws of the same layer (a baseline's local steps); a task batch stacks its tasks'."""
    if isinstance(task, TaskBatch):
        return torch.cat([batch_indices(part, seed, layer, batch_size, *stream) for part in task.parts])
    idx = keyed_integers(seed, ("batch", *task.key, layer, *stream), agent_ids(task), batch_size,
                         task.x_train.shape[1])
    return idx.to(task.x_train.device)


def gather_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent samples ``x[i, idx[i]]``: (N, m, d+1), (N, m), (N, ..., B) -> (N, ..., B, d+1), (N, ..., B)."""
    rows = torch.arange(x.shape[0], device=x.device).view(-1, *([1] * (idx.dim() - 1)))
    return x[rows, idx], y[rows, idx]
