"""The decentralized-classifier task family (``family: decentralized``): config, device, task sampler and graphs,
the U-DGD model they define, and each task's Lagrangian terms (``surf.families.base.TaskFamily``)."""

from __future__ import annotations

import torch

from surf.config import Config
from surf.data.tasks import Task, TaskBatch, TaskSampler
from surf.families.base import TaskTerms
from surf.families.classifier.measures import constraint_values, energy_weight
from surf.graphs.batch import block_diagonal, concat_schedules
from surf.graphs.topology import build_topology
from surf.models.udgd import SERVER, UnrolledDGD
from surf.problems.softmax import agent_losses, agent_metrics
from surf.scenarios.training import TrainingScenario
from surf.utils.device import configure_threads, resolve_device

SHIFT_CACHE = 64  # per-task graphs kept when topology.resample_per_task
BATCH_AGENTS = 4096  # tasks unrolled side by side up to this many agents in all (one task alone beyond it)


class ClassifierFamily:
    """Builds tasks, graphs and models from one validated Config; every draw keyed by ``cfg.seed``."""

    shape_keys = ("model.variant", "model.layers", "model.hops", "model.hidden", "model.features")  # + d, C, batch

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.run_device)
        self.sampler = TaskSampler(cfg)
        # the largest per-step tensor: the compact step's hidden layer, N (d+1) C x hidden; the paper variant's
        # layer weight (eq. 11), p x (p + B (d+1+C)) with p = (d+1) C
        p = self.sampler.num_features * self.sampler.num_classes
        work = (cfg.num_agents * p * cfg.model.hidden if cfg.model.variant == "compact"
                else p * (p + cfg.data.batch_size * (self.sampler.num_features + self.sampler.num_classes)))
        self.threads = configure_threads(cfg.threads, work)
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

    def task_terms(self, model: torch.nn.Module, task: Task | TaskBatch) -> TaskTerms:
        """Unroll ``model`` on ``task``: held-out loss at W_L, descent-constraint slacks, per-layer accuracy/loss.

        A :class:`TaskBatch` is unrolled once, its tasks side by side on a block-diagonal graph; its terms are the
        means over its tasks of each task's terms (slacks per task first, as for separate tasks). With
        ``trainer.scenario`` (robust training) each task's scenario (drawn per task) perturbs it and its network;
        tasks whose scenarios send different messages for silent agents (stale | zero) are unrolled apart.
        """
        parts = task.parts if isinstance(task, TaskBatch) else [task]
        shifts = [self.shift_for(part) for part in parts]
        if self.training_scenario is None:
            return self._unroll(model, parts, shifts, [None] * len(parts), "stale")
        applied = [self.training_scenario.apply(part, shift) for part, shift in zip(parts, shifts, strict=True)]
        by_mode: dict[str, list[int]] = {}
        for i, (_, _, mode) in enumerate(applied):
            by_mode.setdefault(mode, []).append(i)
        terms = [self._unroll(model, [applied[i][0] for i in group], [shifts[i] for i in group],
                              [applied[i][1] for i in group], mode) for mode, group in by_mode.items()]
        return terms[0] if len(terms) == 1 else TaskTerms.combine(terms)

    def _unroll(self, model: torch.nn.Module, parts: list[Task], shifts: list[torch.Tensor], schedules: list,
                mode: str) -> TaskTerms:
        """The terms of ``parts`` unrolled together (side by side when several) under one async mode. Standard
        unrolling (``constraints.kind=none``) logs the gradient norms without a graph for them."""
        cfg, agents = self.cfg, self.data_agents()
        if len(parts) > 1:
            task, shift, schedule = TaskBatch(parts), block_diagonal(shifts), concat_schedules(schedules, shifts)
        else:
            task, shift, schedule = parts[0], shifts[0], schedules[0]
        trajectory = model(task, shift, cfg.seed, schedule, mode, safeguard=False)  # meta-training: the learned step
        tasks, per_task = len(parts), task.num_agents // len(parts)
        losses = agent_losses(trajectory.weights[-1], task.x_test, task.y_test).view(tasks, per_task)
        with torch.no_grad():
            both = trajectory.per_layer(lambda w: torch.stack(agent_metrics(w, task.x_test, task.y_test), dim=1))
            accuracy, loss = (v.contiguous() for v in both.view(-1, 2, tasks, per_task).unbind(1))  # (L+1, T, N/T)
        if agents is not None:
            losses, accuracy, loss = losses[:, agents], accuracy[..., agents], loss[..., agents]
        weight = energy_weight(cfg.constraints, model.classical_start)
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.constraints.kind != "none"):
            values, slacks = constraint_values(trajectory, task, cfg.constraints, cfg.seed, weight, agents)
        if tasks > 1:  # (L+1, T) values, (L, T) slacks: each task's own, then their mean
            values, slacks = values.mean(-1), slacks.mean(-1)
        metrics = {"accuracy": accuracy.mean((-2, -1)), "loss": loss.mean((-2, -1))}
        return TaskTerms(losses.mean(-1).mean(), slacks, values.detach(), metrics, tasks=tasks)

    def batch_tasks(self, tasks: list[Task]) -> list[Task | TaskBatch]:
        """Tasks grouped side by side for one unroll each: as many per batch as keep it within BATCH_AGENTS agents
        (every task alone once N reaches it); the trainer's tasks of a step and its validation tasks go this way."""
        per_batch = max(BATCH_AGENTS // self.cfg.num_agents, 1)
        groups = [tasks[i:i + per_batch] for i in range(0, len(tasks), per_batch)]
        return [TaskBatch(group) if len(group) > 1 else group[0] for group in groups]
