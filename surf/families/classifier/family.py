"""The decentralized-classifier task family (``family: decentralized``): config, device, task sampler and graphs,
the U-DGD model they define, and each task's Lagrangian terms (``surf.families.base.TaskFamily``)."""

from __future__ import annotations

import torch

from surf.config import Config
from surf.data.tasks import Task, TaskSampler
from surf.families.base import TaskTerms
from surf.families.classifier.measures import constraint_values, energy_weight
from surf.graphs.topology import build_topology
from surf.models.udgd import SERVER, UnrolledDGD
from surf.problems.softmax import agent_accuracies, agent_losses
from surf.scenarios.training import TrainingScenario
from surf.utils.device import resolve_device

SHIFT_CACHE = 64  # per-task graphs kept when topology.resample_per_task


class ClassifierFamily:
    """Builds tasks, graphs and models from one validated Config; every draw keyed by ``cfg.seed``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.trainer.device or cfg.device)
        self.sampler = TaskSampler(cfg)
        self.topology = build_topology(cfg.topology, cfg.num_agents, cfg.seed)  # validates connectivity early
        self._shift = self.topology.shift.to(self.device)
        self._task_shifts: dict[tuple, torch.Tensor] = {}
        self.training_scenario = TrainingScenario.from_config(cfg, SERVER if cfg.model.server else None)

    def describe(self) -> str:
        """One line for the start-up message: the graph and its spectral gap."""
        return f"graph '{self.cfg.topology.name}', spectral gap {self.topology.spectral()['spectral_gap']:.4f}"

    def task(self, split: str, index: int, relabel: bool = False) -> Task:
        return self.sampler.task(split, index, relabel=relabel).to(self.device)

    def shift_for(self, task: Task) -> torch.Tensor:
        """The task's S: one graph per task key when ``topology.resample_per_task``, otherwise the fixed one.

        Per-task graphs are built once and reused (drop repetitions, tuning passes and the relabelled twin all
        share the task key); the cache holds the most recent ``SHIFT_CACHE`` tasks.
        """
        if not self.cfg.topology.resample_per_task:
            return self._shift
        if task.key not in self._task_shifts:
            if len(self._task_shifts) >= SHIFT_CACHE:
                self._task_shifts.pop(next(iter(self._task_shifts)))
            topology = build_topology(self.cfg.topology, self.cfg.num_agents, self.cfg.seed, task.key)
            self._task_shifts[task.key] = topology.shift.to(self.device)
        return self._task_shifts[task.key]

    def build_model(self) -> UnrolledDGD:
        model = UnrolledDGD(
            self.cfg.model, self.sampler.num_features, self.sampler.num_classes, self.cfg.data.batch_size
        )
        return model.to(self.device)

    def data_agents(self) -> torch.Tensor | None:
        """Agents that hold data: all but the server (node 0) in star mode."""
        if not self.cfg.model.server:
            return None
        return torch.arange(1, self.cfg.num_agents, device=self.device)

    @property
    def num_constraints(self) -> int:
        return self.cfg.model.layers

    def task_terms(self, model: torch.nn.Module, task: Task) -> TaskTerms:
        """Unroll ``model`` on ``task``: held-out loss at W_L, descent-constraint slacks, per-layer accuracy/loss.

        With ``trainer.scenario`` (robust training) the task's scenario (drawn per task) perturbs it and its network.
        Standard unrolling (``constraints.kind=none``) logs the gradient norms without a graph for them.
        """
        cfg, agents = self.cfg, self.data_agents()
        shift, schedule, mode = self.shift_for(task), None, "stale"
        if self.training_scenario is not None:
            task, schedule, mode = self.training_scenario.apply(task, shift)
        trajectory = model(task, shift, cfg.seed, schedule, mode)
        losses = agent_losses(trajectory.weights[-1], task.x_test, task.y_test)
        with torch.no_grad():
            stacked = torch.stack(trajectory.weights)
            accuracy = agent_accuracies(stacked, task.x_test, task.y_test)
            loss = agent_losses(stacked, task.x_test, task.y_test)
        if agents is not None:
            losses, accuracy, loss = losses[agents], accuracy[:, agents], loss[:, agents]
        weight = energy_weight(cfg.constraints, model.classical_start)
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.constraints.kind != "none"):
            values, slacks = constraint_values(trajectory, task, cfg.constraints, cfg.seed, weight, agents)
        metrics = {"accuracy": accuracy.mean(-1), "loss": loss.mean(-1)}
        return TaskTerms(losses.mean(), slacks, values.detach(), metrics)
