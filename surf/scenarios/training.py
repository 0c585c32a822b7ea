"""Robust meta-training (``trainer.scenario``): stress scenarios applied to the meta-train and validation tasks.

``trainer.scenario`` names one scenario or a list of them (a per-task mixture); ``trainer.scenario_severity`` gives
each a value, a range ``[lo, hi]`` or None (its representative severity). Task t draws, from the generator keyed by
``(seed, "training_scenario", *task key)``, the member ``m ~ U{1..M}`` and then its severity ``s ~ U[lo, hi]``
(uniform over the integers lo..hi when both bounds are integers, e.g. dropped agents; continuous otherwise). So a
task always sees the same perturbation, whichever worker, resume or validation pass draws it. The perturbations
themselves are the scenarios' own, keyed by the task as at evaluation (``surf.scenarios.perturbations``): a
``fig4_async`` member at severity n drops exactly ``dropped_agents(N, n, seed, task key, step)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from surf.config import Config, TrainerConfig
from surf.graphs.network import Schedule
from surf.scenarios.perturbations import Context
from surf.scenarios.scenario import BoundScenario, Scenario, load_scenario
from surf.utils.errors import ConfigError
from surf.utils.seeding import torch_generator


@dataclass(frozen=True)
class Member:
    """One scenario of the mixture with its severity: a value, a ``[lo, hi]`` range, or None (representative)."""

    scenario: Scenario
    severity: Any

    def draw(self, gen: torch.Generator) -> Any:
        """The severity of one task: the value, or a uniform draw from the range."""
        if not isinstance(self.severity, list | tuple):
            return self.scenario.representative if self.severity is None else self.severity
        lo, hi = self.severity
        if isinstance(lo, int) and isinstance(hi, int):
            return int(torch.randint(lo, hi + 1, (1,), generator=gen))
        return lo + (hi - lo) * float(torch.rand(1, generator=gen))

    def checkpoints(self) -> list[Any]:
        """Severities bound once at start-up to surface bad values: the bounds and an interior point of a range."""
        if not isinstance(self.severity, list | tuple):
            return [self.draw(torch.Generator())]
        lo, hi = self.severity
        integer = isinstance(lo, int) and isinstance(hi, int)
        return [lo, hi] if integer else [lo, hi, lo + (hi - lo) / 3]


@dataclass
class TrainingScenario:
    """The scenario (mixture) applied to meta-training and validation tasks, drawn per task."""

    members: tuple[Member, ...]
    seed: int
    protect: int | None = None
    gso: str = "row_normalized"
    _bound: dict[tuple[str, Any], BoundScenario] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, cfg: Config, protect: int | None) -> TrainingScenario | None:
        """From ``trainer.scenario`` / ``scenario_severity``; None without a scenario. Every member is bound at its
        severities' bounds first: a bad value or a scenario that changes the config is a one-line error."""
        mixture = cfg.trainer.scenario_mixture()
        if not mixture:
            return None
        members = tuple(Member(load_scenario(name), severity) for name, severity in mixture)
        for member in members:
            if member.severity is not None:
                member.scenario.check_severity_given("trainer.scenario_severity")
        result = cls(members, cfg.seed, protect, cfg.topology.gso)
        for member in members:
            for severity in member.checkpoints():
                bound = result._bind(member, severity)
                try:
                    bound.check(cfg.num_agents)
                except ConfigError as exc:
                    raise ConfigError(f"trainer.scenario_severity: {exc}; lower it or raise num_agents") from None
                bound.check_steps(cfg.model.layers)
                if bound.overrides:
                    raise ConfigError(f"trainer.scenario={member.scenario.name!r} changes the config "
                                      f"({', '.join(bound.overrides)}); set those values in the training config")
        return result

    def _bind(self, member: Member, severity: Any) -> BoundScenario:
        key = (member.scenario.name, severity)
        if key not in self._bound:
            self._bound[key] = member.scenario.bind(severity)
        return self._bound[key]

    def draw(self, task_key: tuple) -> BoundScenario:
        """The scenario and severity of the task with key ``task_key`` (keyed: the same on every call)."""
        gen = torch_generator(self.seed, "training_scenario", *task_key)
        index = int(torch.randint(len(self.members), (1,), generator=gen)) if len(self.members) > 1 else 0
        member = self.members[index]
        return self._bind(member, member.draw(gen))

    def apply(self, task: Any, shift: torch.Tensor) -> tuple[Any, Schedule | None, str]:
        """The perturbed task, its schedule (repetition 0; every training task has its own key) and what neighbours
        of a silent agent receive (stale | zero)."""
        bound = self.draw(task.key)
        ctx = Context(self.seed, task.key, 0, task.num_agents, self.protect, self.gso)
        return bound.task(ctx, task), bound.schedule(ctx, shift), bound.async_mode


def training_label(trainer: TrainerConfig) -> str:
    """What a model was meta-trained under: ``clean``, ``fig4_async@5``, ``fig4_async@0..10+link_loss@0.2``."""
    def one(name: str, severity: Any) -> str:
        if severity is None:
            return name
        if isinstance(severity, list | tuple):
            return f"{name}@{severity[0]:g}..{severity[1]:g}"
        return f"{name}@{severity:g}"

    mixture = trainer.scenario_mixture()
    return "+".join(one(name, severity) for name, severity in mixture) if mixture else "clean"
