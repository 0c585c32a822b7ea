"""What the classifier family's descent constraints measure per layer (paper eq. 3):

CI  (SURF):  ``||grad f(W_l; B_l)||`` — the stacked gradient norm of all agents;
CII (TSP):   ``||W_l - W*||`` — every agent's distance to the pooled (L2-regularized) optimum.

Norms are Frobenius norms of all agents' matrices stacked (one scalar per layer and task, as in the paper).
"""

from __future__ import annotations

import torch

from surf.config import ConstraintConfig
from surf.constrained.constraints import descent_constraints
from surf.data.batches import batch_indices, gather_batch
from surf.data.tasks import Task, TaskBatch
from surf.models.udgd import Trajectory
from surf.problems.softmax import agent_gradients, pooled_optimum, stacked_norm


def gradient_norms(
    trajectory: Trajectory,
    task: Task,
    gradient_on: str,
    seed: int = 0,
    agents: torch.Tensor | None = None,
) -> torch.Tensor:
    """``||grad f(W_l; B)||_F`` for l = 0..L -> (L+1,), differentiable w.r.t. the trajectory.

    gradient_on: ``batch`` = the batch B_l that produced W_l (paper; W_0 uses B_1), ``next_batch`` = B_{l+1}
    (authors' code; W_L uses a fresh batch), ``full`` = the agent's whole local training set; the local steps' own
    full gradients at W_0..W_{L-1} are reused when they computed them (only the one at W_L is new).
    """
    if gradient_on == "full" and len(trajectory.full_gradients) == len(trajectory.weights) - 1:
        last = agent_gradients(trajectory.weights[-1], task.x_train, task.y_train)
        return stacked_norm(torch.stack([*trajectory.full_gradients, last]), agents, task.num_tasks)
    w = torch.stack(trajectory.weights)  # (L+1, N, d+1, C)
    if gradient_on == "full":
        grads = agent_gradients(w, task.x_train, task.y_train)
    else:
        batches = list(trajectory.batches)
        if gradient_on == "batch":
            batches = [batches[0]] + batches
        else:
            fresh = batch_indices(task, seed, len(batches) + 1, batches[0].shape[1])
            batches = batches + [fresh]
        xb, yb = gather_batch(task.x_train, task.y_train, torch.stack(batches, dim=1))  # (N, L+1, B, ...)
        grads = agent_gradients(w, xb.transpose(0, 1), yb.transpose(0, 1))
    return stacked_norm(grads, agents, task.num_tasks)


def distances_to_optimum(
    trajectory: Trajectory, optimum: torch.Tensor, agents: torch.Tensor | None = None, tasks: int = 1
) -> torch.Tensor:
    """``||W_l - 1 w*^T||_F`` for l = 0..L -> (L+1,): every agent's distance to the pooled optimum (``optimum``
    (d+1, C), or one per agent (N, d+1, C) for tasks side by side; then -> (L+1, T))."""
    w = torch.stack(trajectory.weights)
    return stacked_norm(w - optimum, agents, tasks)


def task_optimum(task: Task | TaskBatch, l2: float) -> torch.Tensor:
    """The L2-regularized optimum of the task's pooled training problem (what CII measures distance to): (d+1, C),
    or for tasks side by side each agent's task's optimum (T N, d+1, C)."""
    if isinstance(task, TaskBatch):
        per_agent = task.num_agents // task.num_tasks
        return torch.cat([task_optimum(part, l2).expand(per_agent, -1, -1) for part in task.parts])
    return pooled_optimum(task.x_pool, task.y_pool, task.num_classes, l2)


def constraint_values(
    trajectory: Trajectory, task: Task, cfg: ConstraintConfig, seed: int, agents: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer measured values a_0..a_L (gradient norms or distances) and the slacks c_1..c_L."""
    if cfg.kind == "distance":
        values = distances_to_optimum(trajectory, task_optimum(task, cfg.optimum_l2), agents, task.num_tasks)
    else:
        values = gradient_norms(trajectory, task, cfg.gradient_on, seed, agents)
    return values, descent_constraints(values, cfg.form, cfg.epsilon)
