"""What the classifier family's descent constraints measure per layer, ``a_0..a_L`` (``constraints.kind``; the
constraint is eq. 3 on these values, in any form):

* ``gradient_norm`` (CI, SURF):  ``a_l = ||grad f(W_l; B)||`` — the stacked gradient norm of all agents;
* ``distance`` (CII, TSP):       ``a_l = ||W_l - 1 w*^T||`` — every agent's distance to the pooled (L2) optimum;
* ``loss``:                      ``a_l = f(W_l) = (1/N) sum_i f_i(W_{i,l})`` — the agents' mean full local training
  loss (cross-entropy on all their training samples);
* ``energy`` (heavy-ball Lyapunov function): ``a_l = f(W_l) + c (1/N) sum_i ||W_{i,l} - W_{i,l-1}||^2`` with
  ``W_{-1} = W_0``. For heavy-ball ``x+ = x - alpha grad f(x) + beta (x - x-)`` on an L-smooth f,
  ``f(x+) + c||x+ - x||^2 <= f(x) + c||x - x-||^2 - ((1 - beta)/alpha - L/2) ||x+ - x||^2`` with ``c = beta/(2 alpha)``
  (from L-smoothness and the update, as in Zavriev & Kostyuk 1993), so the energy decreases whenever
  ``alpha < 2 (1 - beta) / L``, although f itself and ||grad f|| need not. ``constraints.energy_weight`` sets c;
  unset, c = beta/(2 alpha) of the model's classical start (its warm start or ``model.step_init`` /
  ``momentum_init``). On a graph, DGD is gradient descent on f plus the consensus penalty
  ``(1/(2 alpha)) W^T (I - S) W`` (Yuan, Ling & Yin 2016), which this energy leaves out: it is the centralized
  Lyapunov function, exact at consensus;
* ``window``: ``a_l = mean (or max, ``constraints.window_reduce``) of ||grad f(W_l)||, ||grad f(W_{l-1})||`` with
  ``W_{-1} = W_0``. With the mean and eps = 0, ``a_l <= a_{l-1}`` is ``||grad f(W_l)|| <= ||grad f(W_{l-2})||``:
  descent over every two layers, which admits heavy-ball's one-layer rises. With the max and eps = 0 it is the
  non-monotone condition ``||grad f(W_l)|| <= max(||grad f(W_{l-1})||, ||grad f(W_{l-2})||)`` (Grippo, Lampariello &
  Lucidi 1986, memory 2); with eps > 0 the max form fails after every rise, so use it with eps = 0.

Norms are Frobenius norms of all agents' matrices stacked (one scalar per layer and task, as in the paper); the loss
and the energy are means over agents. ``none`` (standard unrolling) logs the gradient norm.
"""

from __future__ import annotations

import torch

from surf.config import ConstraintConfig
from surf.constrained.constraints import descent_constraints
from surf.data.batches import batch_indices, gather_batch
from surf.data.tasks import Task, TaskBatch
from surf.models.udgd import Trajectory
from surf.problems.softmax import agent_gradients, agent_losses, pooled_optimum, stacked_norm


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
        return torch.stack([stacked_norm(g, agents, task.num_tasks) for g in (*trajectory.full_gradients, last)])
    if gradient_on == "full":
        return trajectory.per_layer(lambda w: stacked_norm(agent_gradients(w, task.x_train, task.y_train), agents,
                                                           task.num_tasks))
    batches = list(trajectory.batches)
    if gradient_on == "batch":
        batches = [batches[0]] + batches
    else:
        fresh = batch_indices(task, seed, len(batches) + 1, batches[0].shape[1])
        batches = batches + [fresh]
    xb, yb = gather_batch(task.x_train, task.y_train, torch.stack(batches, dim=1))  # (N, L+1, B, ...)
    grads = agent_gradients(torch.stack(trajectory.weights), xb.transpose(0, 1), yb.transpose(0, 1))
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


def agent_mean(values: torch.Tensor, agents: torch.Tensor | None = None, tasks: int = 1) -> torch.Tensor:
    """Mean over agents (over ``agents`` if given) of per-agent values (..., N) -> (...); with ``tasks`` = T > 1 the
    agents are T tasks' side by side: -> (..., T), each task's own mean."""
    if tasks > 1:
        values = values.unflatten(-1, (tasks, -1))
    return (values[..., agents] if agents is not None else values).mean(dim=-1)


def training_losses(trajectory: Trajectory, task: Task | TaskBatch, agents: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """``f(W_l) = (1/N) sum_i f_i(W_{i,l})`` for l = 0..L -> (L+1,) (per task for a batch: (L+1, T)): the agents'
    mean full local training loss."""
    losses = trajectory.per_layer(lambda w: agent_losses(w, task.x_train, task.y_train))  # (L+1, N)
    return agent_mean(losses, agents, task.num_tasks)


def squared_steps(trajectory: Trajectory, agents: torch.Tensor | None = None, tasks: int = 1) -> torch.Tensor:
    """``(1/N) sum_i ||W_{i,l} - W_{i,l-1}||^2`` for l = 0..L -> (L+1,) (or (L+1, T)), with ``W_{-1} = W_0``."""
    w = torch.stack(trajectory.weights)
    steps = torch.cat([torch.zeros_like(w[:1]), w[1:] - w[:-1]]).pow(2).sum(dim=(-2, -1))  # (L+1, N)
    return agent_mean(steps, agents, tasks)


def energies(trajectory: Trajectory, task: Task | TaskBatch, weight: float, agents: torch.Tensor | None = None
             ) -> torch.Tensor:
    """The heavy-ball energy ``f(W_l) + c (1/N) sum_i ||W_{i,l} - W_{i,l-1}||^2`` for l = 0..L, c = ``weight``."""
    return training_losses(trajectory, task, agents) + weight * squared_steps(trajectory, agents, task.num_tasks)


def windowed(values: torch.Tensor, reduce: str) -> torch.Tensor:
    """``a_l = mean | max(v_l, v_{l-1})`` over a window of two layers for l = 0..L (the first dim; any per-task dims
    after it), with ``v_{-1} = v_0``."""
    previous = torch.cat([values[:1], values[:-1]])
    return torch.maximum(values, previous) if reduce == "max" else 0.5 * (values + previous)


def energy_weight(cfg: ConstraintConfig, classical_start: torch.Tensor) -> float:
    """c of the energy: ``constraints.energy_weight``, or ``beta / (2 alpha)`` of the model's classical start
    ``(alpha, beta)`` (``UnrolledDGD.classical_start``)."""
    if cfg.energy_weight is not None:
        return cfg.energy_weight
    step, momentum = (float(v) for v in classical_start)
    return momentum / (2.0 * step)


def declared_quantity(kind: str) -> str:
    """What a run's descent constraint is on (``constraints.kind``); standard unrolling logs the gradient norm."""
    return "gradient_norm" if kind == "none" else kind


def measure(trajectory: Trajectory, task: Task | TaskBatch, cfg: ConstraintConfig, seed: int, weight: float,
            agents: torch.Tensor | None = None) -> torch.Tensor:
    """The run's declared quantity a_0..a_L (``constraints.kind``; see the module docstring), differentiable;
    (L+1, T) for T tasks side by side."""
    kind = declared_quantity(cfg.kind)
    if kind == "distance":
        return distances_to_optimum(trajectory, task_optimum(task, cfg.optimum_l2), agents, task.num_tasks)
    if kind == "loss":
        return training_losses(trajectory, task, agents)
    if kind == "energy":
        return energies(trajectory, task, weight, agents)
    norms = gradient_norms(trajectory, task, cfg.gradient_on, seed, agents)
    return windowed(norms, cfg.window_reduce) if kind == "window" else norms


def constraint_values(trajectory: Trajectory, task: Task, cfg: ConstraintConfig, seed: int, weight: float,
                      agents: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer measured values a_0..a_L of the declared quantity and the slacks c_1..c_L (eq. 3)."""
    values = measure(trajectory, task, cfg, seed, weight, agents)
    return values, descent_constraints(values, cfg.form, cfg.epsilon)


def full_data_measures(trajectory: Trajectory, task: Task, cfg: ConstraintConfig, weight: float,
                       agents: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every momentum-compatible quantity and the gradient norm on the agents' full local data, a_0..a_L each: what
    the evaluation reports for every model, whatever it was trained to decrease."""
    norms = gradient_norms(trajectory, task, "full", agents=agents)
    losses = training_losses(trajectory, task, agents)
    steps = squared_steps(trajectory, agents, task.num_tasks)
    return {"gradient_norm": norms, "loss": losses, "energy": losses + weight * steps,
            "window": windowed(norms, cfg.window_reduce)}
