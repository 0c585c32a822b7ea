"""What the primal-dual trainer needs from a task family (decentralized classifier, LISTA sparse coding, ...).

The meta-training loop (``surf.training.trainer``) is written once against :class:`TaskFamily`; a family supplies
its tasks, its unrolled model and, per task, the terms of the Lagrangian (paper eq. 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from surf.config import Config


@dataclass
class TaskTerms:
    """What one unrolled task contributes to the Lagrangian, plus per-layer diagnostics for ``metrics.jsonl``."""

    objective: torch.Tensor  # the task's loss at the last layer, differentiable
    slacks: torch.Tensor  # c_1..c_L (differentiable when constrained)
    values: torch.Tensor  # measured a_0..a_L (detached): gradient norms or distances
    layer_metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (L+1,) detached, e.g. accuracy
    tasks: int = 1  # tasks these terms average (a batch of tasks unrolled side by side)

    @staticmethod
    def combine(terms: list[TaskTerms]) -> TaskTerms:
        """Several units' terms as one unit of all their tasks: task-weighted means, the task counts summed."""
        total = sum(t.tasks for t in terms)

        def mean(get: Callable[[TaskTerms], torch.Tensor]) -> torch.Tensor:
            return sum(t.tasks * get(t) for t in terms) / total

        metrics = {name: mean(lambda t, name=name: t.layer_metrics[name]) for name in terms[0].layer_metrics}
        return TaskTerms(mean(lambda t: t.objective), mean(lambda t: t.slacks), mean(lambda t: t.values), metrics,
                         total)


@dataclass
class Pretraining:
    """An optional stage before meta-training (e.g. fitting a flow as a density model): ``steps`` Adam steps at ``lr``
    on ``loss(step)`` over ``parameters``. A family offers it through ``pretraining(model) -> Pretraining | None``."""

    parameters: list[torch.nn.Parameter]
    loss: Callable[[int], torch.Tensor]
    steps: int
    lr: float


class TaskFamily(Protocol):
    """A task distribution with its unrolled model: everything the trainer calls."""

    cfg: Config
    device: torch.device
    shape_keys: tuple[str, ...]  # the config keys the model's parameter shapes follow (named when a checkpoint misfits)

    @property
    def num_constraints(self) -> int:
        """L: one descent constraint (and one dual variable) per layer."""

    def build_model(self) -> torch.nn.Module:
        """A freshly initialized unrolled model on ``device``."""

    def task(self, split: str, index: int, relabel: bool = False) -> Any:
        """Task ``index`` of ``split`` (train | val | test), rebuilt from its key alone."""

    def task_terms(self, model: torch.nn.Module, task: Any) -> TaskTerms:
        """Unroll ``model`` on ``task``: objective, constraint slacks and per-layer metrics."""
