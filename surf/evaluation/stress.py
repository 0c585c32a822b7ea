"""``surf stress``: trained models and tuned baselines across a scenario's severities, with repetitions.

Every method sees the same meta-test tasks, the same W_0 and, per (task, repetition), the same compiled scenario
(``surf.scenarios``): the same silent agents, lost links, graphs and delays. Baselines are tuned once on the clean
validation tasks at the unrolled model's number of communication rounds, then stressed with those settings, as the
learned model was trained once and is not retrained. Reported per method and severity: mean ± std of the final
held-out accuracy over (task, repetition) pairs, the std of the task-averaged accuracy over repetitions, and for
learned models the fractions of (task, repetition, layer) triples whose descent constraint (the run's declared
quantity, form and epsilon) still holds and whose declared quantity strictly decreased.

The (severity, task, repetition) units are independent and every draw in one is keyed by it, so they can run in any
order and anywhere: ``surf stress --workers N`` splits them into chunks over Ray workers (a ``Mapper``) and merges the
results by unit, giving exactly the numbers of one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from surf.baselines.registry import BASELINES, run_baseline
from surf.config import Config
from surf.data.batches import initial_weights
from surf.evaluation.baselines import baseline_settings, choose_hyper, context
from surf.evaluation.summary import MatrixCell, MatrixRow, StressMatrix, StressMethod, StressResult
from surf.families.classifier.family import ClassifierFamily
from surf.families.classifier.measures import constraint_values, declared_quantity, energy_weight
from surf.models.udgd import UnrolledDGD
from surf.problems.softmax import agent_accuracies
from surf.scenarios.scenario import BoundScenario, Scenario, ScenarioSchedule
from surf.scenarios.training import training_label
from surf.utils.errors import ConfigError
from surf.utils.replicas import physical_memory

SHARED = ("seed", "num_agents", "data", "topology")  # what runs compared on the same tasks must agree on
CHUNKS_PER_WORKER = 8  # units are split into this many chunks per worker: idle workers take the next one
Unit = tuple[int, int, int]  # (severity index, meta-test task, repetition)
UnitResult = tuple[dict[str, float], dict[str, tuple[torch.Tensor, torch.Tensor]]]  # accuracy per method; per
#   learned model (its constraint held, its declared quantity decreased) per layer
UNIT_BYTES = 1024  # a unit's plan entry and results, kept until the table is written (measured: about 0.9 KB)


def check_plan(tasks: int, repeats: int, severities: int) -> None:
    """Refuse a stress plan whose units alone would not fit in this machine's memory (``--tasks 10**20`` would be
    killed for memory after the baselines were tuned, with no message)."""
    units, memory = tasks * repeats * severities, physical_memory()
    if memory is not None and units * UNIT_BYTES > memory:
        raise ConfigError(f"--tasks={tasks} x --repeats={repeats} x {severities} severities = {units:,} stress runs "
                          f"would need {units * UNIT_BYTES / 2**30:,.0f} GiB for their results alone; lower --tasks "
                          "or --repeats")


class Mapper(Protocol):
    """Runs ``fn(shared, item)`` for every item on ``workers`` workers, yielding the results in any order
    (``surf.runtime.ray_tasks.RayMapper``)."""

    workers: int

    def __call__(self, fn: Callable[[Any, Any], Any], shared: Any, items: list) -> Iterator[Any]: ...


@dataclass
class Learned:
    """A trained unrolled model and the config it was trained with."""

    label: str
    cfg: Config
    model: UnrolledDGD

    @property
    def method(self) -> str:
        return "unrolling" if self.cfg.constraints.kind == "none" else "surf"

    @property
    def trained_on(self) -> str:
        return training_label(self.cfg.trainer)


# ---------------------------------------------------------------- baselines: the one place that calls them

def tune_baselines(family: ClassifierFamily, names: list[str], rounds: int) -> dict[str, dict]:
    """Each baseline's hyper-parameters and mini-batch size, chosen on the clean validation tasks at ``rounds``
    communication rounds (or the paper preset under ``eval.baseline_preset=paper``), as in ``surf run``."""
    tuned = {}
    for name in names:
        if name not in BASELINES:
            raise ConfigError(f"unknown baseline '{name}' for --baselines (valid: {', '.join(BASELINES)})")
        if BASELINES[name].star and not family.cfg.model.server:
            raise ConfigError(f"--baselines {name} is a server-client method: it needs a star-mode run")
        hyper, batch, _ = choose_hyper(family, name, rounds)
        tuned[name] = {"hyper": hyper, "batch": batch}
    return tuned


def run_baselines(family: ClassifierFamily, tuned: dict[str, dict], task: Any, shift: torch.Tensor,
                  schedule: ScenarioSchedule | None, rounds: int, rounds_per_step: int, mode: str) -> dict[str, float]:
    """Final held-out accuracy of every tuned baseline on one (perturbed) task, all under the same schedule."""
    cfg = family.cfg
    per_round = schedule.per_round(rounds_per_step) if schedule is not None else None
    w0 = initial_weights(task, cfg.seed, cfg.model.w0_std)
    finals = {}
    for name, chosen in tuned.items():
        grid = {k: torch.tensor([v]) for k, v in chosen["hyper"].items()}
        curves = run_baseline(name, task, shift, w0, rounds, grid, agents=family.data_agents(), schedule=per_round,
                              async_mode=mode, seed=cfg.seed, batch=chosen["batch"], settings=baseline_settings(cfg),
                              curve=False)
        finals[name] = curves.accuracy[0, -1].item()
    return finals


# ---------------------------------------------------------------- the bench


class StressBench:
    """Trained models, their task family and the tuned baselines, reused across scenarios.

    ``learned`` are models trained on the same tasks and graph (``SHARED`` config entries agree); the first one's
    family provides the meta-test tasks.
    """

    def __init__(self, family: ClassifierFamily, learned: list[Learned], baselines: list[str],
                 test_tasks: int | None = None) -> None:
        if not learned:
            raise ConfigError("surf stress needs at least one trained run directory")
        self.family, self.learned, self.cfg = family, learned, learned[0].cfg
        for other in learned[1:]:
            for key in SHARED:
                if getattr(other.cfg, key) != getattr(self.cfg, key):
                    raise ConfigError(f"runs '{learned[0].label}' and '{other.label}' differ in '{key}'; compare "
                                      "runs trained on the same tasks and graph")
        self.test_tasks = test_tasks or self.cfg.eval.test_tasks
        self.rounds = max(learned[0].model.rounds, 1)
        self.rounds_per_step = max(self.cfg.model.hops, 1)
        self.tuned = tune_baselines(family, list(baselines), self.rounds)

    def labels(self) -> list[str]:
        return [m.label for m in self.learned] + list(self.tuned)

    def run(self, scenario: Scenario, severities: list | None = None, repeats: int = 20, progress: bool = True,
            mapper: Mapper | None = None) -> StressResult:
        """Every method on ``test_tasks`` meta-test tasks x ``repeats`` at every severity.

        The (severity, task, repetition) units run here in order, or in contiguous chunks on ``mapper``'s workers;
        results are merged by unit, and every draw of a unit is keyed by the unit, so both give the same numbers."""
        from tqdm import tqdm

        if repeats < 1:
            raise ConfigError(f"--repeats={repeats} must be >= 1")
        given = severities is not None
        severities = list(severities if given else scenario.severities)
        bound = [scenario.bind(s) for s in severities]
        for b in bound:
            try:
                b.check(self.cfg.num_agents)
            except ConfigError as exc:
                fix = "choose a lower --severity" if given else \
                    f"the scenario's severities go up to {severities[-1]}: pass lower ones with --severity"
                raise ConfigError(f"{exc}; {fix}") from None
            b.check_steps(max(m.cfg.model.layers for m in self.learned))  # a perturbation that never acts
        reps = [repeats if b.random else 1 for b in bound]  # a deterministic scenario: every repetition is the same
        units = [(s, i, r) for s in range(len(bound)) for i in range(self.test_tasks) for r in range(reps[s])]
        start = time.perf_counter()
        with tqdm(total=len(units), desc=f"stress {scenario.name}", unit="run", disable=not progress) as bar:
            if mapper is None:
                results = self.run_units(bound, units, bar.update)
            else:
                pieces = min(len(units), CHUNKS_PER_WORKER * mapper.workers)
                chunks = [units[k * len(units) // pieces:(k + 1) * len(units) // pieces] for k in range(pieces)]
                results = {}
                for part in mapper(_run_chunk, (self, bound), chunks):
                    results.update(part)
                    bar.update(len(part))
        methods = {m.label: StressMethod(kind=m.method, mean=[], std=[], std_over_repeats=[], trained_on=m.trained_on,
                                         constraint_satisfied_fraction=[], declared_decrease_fraction=[],
                                         declared_quantity=declared_quantity(m.cfg.constraints.kind))
                   for m in self.learned}
        methods.update({name: StressMethod(kind="baseline", mean=[], std=[], std_over_repeats=[],
                                           hyper=self.tuned[name]["hyper"], batch=self.tuned[name]["batch"])
                        for name in self.tuned})
        for s in range(len(bound)):
            keys = [(s, i, r) for i in range(self.test_tasks) for r in range(reps[s])]
            for label, row in methods.items():
                values = torch.zeros(self.test_tasks, reps[s])
                for _, i, r in keys:
                    values[i, r] = results[(s, i, r)][0][label]
                row.mean.append(values.mean().item())
                row.std.append(values.std().item() if values.numel() > 1 else 0.0)
                per_repeat = values.mean(0)
                row.std_over_repeats.append(per_repeat.std().item() if per_repeat.numel() > 1 else 0.0)
                if row.constraint_satisfied_fraction is not None:
                    holds, decreased = (torch.cat([results[key][1][label][j] for key in keys]) for j in (0, 1))
                    row.constraint_satisfied_fraction.append(holds.float().mean().item())
                    row.declared_decrease_fraction.append(decreased.float().mean().item())
        return StressResult(
            scenario=scenario.name, description=scenario.description, severity_name=scenario.severity_name,
            severities=severities, repeats=repeats, test_tasks=self.test_tasks, async_mode=scenario.async_mode,
            rounds=self.rounds, methods=methods, seconds=round(time.perf_counter() - start, 1))

    @torch.no_grad()
    def run_units(self, bound: list[BoundScenario], units: list[Unit],
                  advance: Callable[[int], Any] | None = None) -> dict[Unit, UnitResult]:
        """Per (severity index, task, repetition): every method's final accuracy and, per learned model, whether
        its descent constraint held and whether its declared quantity strictly decreased at each layer (units of one
        severity and task share their task and graph)."""
        results: dict[Unit, UnitResult] = {}
        at_severity = at_task = None
        for s, i, rep in units:
            if s != at_severity:
                b, at_severity, at_task = bound[s], s, None
                family = self.family if not b.overrides else ClassifierFamily(b.config(self.cfg))
                cfg, agents = family.cfg, family.data_agents()
            if i != at_task:
                clean, at_task = family.task("test", i), i
                shift = family.shift_for(clean)
            ctx = context(family, clean, rep)
            task = b.task(ctx, clean)
            schedule = b.schedule(ctx, shift)
            accuracy, holds = {}, {}
            for m in self.learned:
                trajectory = m.model(task, shift, cfg.seed, schedule, b.async_mode)
                accuracy[m.label] = _mean_accuracy(trajectory.weights[-1], task, agents)
                weight = energy_weight(m.cfg.constraints, m.model.classical_start)
                values, slacks = constraint_values(trajectory, task, m.cfg.constraints, cfg.seed, weight, agents)
                holds[m.label] = (slacks <= 0, values[1:] < values[:-1])
            accuracy.update(run_baselines(family, self.tuned, task, shift, schedule, self.rounds,
                                          self.rounds_per_step, b.async_mode))
            results[(s, i, rep)] = accuracy, holds
            if advance is not None:
                advance(1)
        return results


def _run_chunk(shared: tuple[StressBench, list[BoundScenario]], units: list[Unit]) -> dict[Unit, UnitResult]:
    """One chunk of units on a worker (``shared``: the bench and the bound severities, sent once)."""
    bench, bound = shared
    return bench.run_units(bound, units)


def _mean_accuracy(w: torch.Tensor, task: Any, agents: torch.Tensor | None) -> float:
    values = agent_accuracies(w, task.x_test, task.y_test)
    return (values[agents] if agents is not None else values).mean().item()


def matrix(bench: StressBench, scenarios: list[Scenario], repeats: int, progress: bool = True,
           mapper: Mapper | None = None) -> StressMatrix:
    """Train scenario x test scenario: every model (and baseline) at each test scenario's representative severity."""
    rows: dict[str, MatrixRow] = {m.label: MatrixRow(m.trained_on, m.method, {}) for m in bench.learned}
    rows.update({name: MatrixRow("-", "baseline", {}) for name in bench.tuned})
    for scenario in scenarios:
        severity = scenario.representative
        result = bench.run(scenario, [severity], repeats, progress, mapper)
        for label, row in result.methods.items():
            held = row.constraint_satisfied_fraction
            rows[label].cells[scenario.name] = MatrixCell(severity, row.mean[0], row.std[0], held[0] if held else None)
    return StressMatrix(test_scenarios=[s.name for s in scenarios], repeats=repeats, test_tasks=bench.test_tasks,
                        rows=rows)
