"""``surf stress``: trained models and tuned baselines across a scenario's severities, with repetitions.

Every method sees the same meta-test tasks, the same W_0 and, per (task, repetition), the same compiled scenario
(``surf.scenarios``): the same silent agents, lost links, graphs and delays. Baselines are tuned once on the clean
validation tasks at the unrolled model's number of communication rounds, then stressed with those settings, as the
learned model was trained once and is not retrained. Reported per method and severity: mean ± std of the final
held-out accuracy over (task, repetition) pairs, the std of the task-averaged accuracy over repetitions, and for
learned models the fraction of (task, repetition, layer) triples whose descent constraint (the run's form and
epsilon, on the full-local-data gradient norm as measured) still holds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from surf.config import Config
from surf.constraints import descent_constraints, gradient_norms
from surf.errors import ConfigError
from surf.experiment import Experiment
from surf.family import load_trained
from surf.perturbations import Context
from surf.problems.softmax import agent_accuracies
from surf.rundir import atomic_write
from surf.scenarios import BoundScenario, Scenario, ScenarioSchedule
from surf.unrolled import SERVER, UnrolledDGD, initial_weights

SHARED = ("seed", "num_agents", "data", "topology")  # what runs compared on the same tasks must agree on


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
        scenario, severity = self.cfg.trainer.scenario, self.cfg.trainer.scenario_severity
        if not scenario:
            return "clean"
        return scenario if severity is None else f"{scenario}@{severity:g}"


# ---------------------------------------------------------------- baselines: the one place that calls them

def tune_baselines(exp: Experiment, names: list[str], rounds: int) -> dict[str, dict]:
    """Each baseline's hyper-parameters and mini-batch size, chosen on the clean validation tasks at ``rounds``
    communication rounds (or the paper preset under ``eval.baseline_preset=paper``), as in ``surf run``."""
    from surf.baselines import BASELINES
    from surf.evaluate import choose_hyper

    tuned = {}
    for name in names:
        if name not in BASELINES:
            raise ConfigError(f"unknown baseline '{name}' for --baselines (valid: {', '.join(BASELINES)})")
        if BASELINES[name].star and not exp.cfg.model.server:
            raise ConfigError(f"--baselines {name} is a server-client method: it needs a star-mode run")
        hyper, batch, _ = choose_hyper(exp, name, rounds)
        tuned[name] = {"hyper": hyper, "batch": batch}
    return tuned


def run_baselines(exp: Experiment, tuned: dict[str, dict], task: Any, shift: torch.Tensor,
                  schedule: ScenarioSchedule | None, rounds: int, rounds_per_step: int, mode: str) -> dict[str, float]:
    """Final held-out accuracy of every tuned baseline on one (perturbed) task, all under the same schedule."""
    from surf.baselines import run_baseline
    from surf.evaluate import baseline_settings

    cfg = exp.cfg
    per_round = schedule.per_round(rounds_per_step) if schedule is not None else None
    w0 = initial_weights(task, cfg.seed, cfg.model.w0_std)
    finals = {}
    for name, chosen in tuned.items():
        grid = {k: torch.tensor([v]) for k, v in chosen["hyper"].items()}
        curves = run_baseline(name, task, shift, w0, rounds, grid, agents=exp.data_agents(), schedule=per_round,
                              async_mode=mode, seed=cfg.seed, batch=chosen["batch"], settings=baseline_settings(cfg))
        finals[name] = curves.accuracy[0, -1].item()
    return finals


# ---------------------------------------------------------------- the bench


class StressBench:
    """Loaded models, the base experiment and the tuned baselines, reused across scenarios."""

    def __init__(self, run_dirs: list[str | Path], baselines: list[str], test_tasks: int | None = None) -> None:
        if not run_dirs:
            raise ConfigError("surf stress needs at least one trained run directory")
        self.learned: list[Learned] = []
        self.exp: Experiment | None = None
        for run_dir in run_dirs:
            exp, model = load_trained(run_dir)
            cfg = exp.cfg
            label = Path(run_dir).name
            if any(m.label == label for m in self.learned):
                label = str(run_dir)
            self.learned.append(Learned(label, cfg, model))
            self.exp = self.exp or exp
        self.cfg = self.learned[0].cfg
        for other in self.learned[1:]:
            for key in SHARED:
                if getattr(other.cfg, key) != getattr(self.cfg, key):
                    raise ConfigError(f"runs '{self.learned[0].label}' and '{other.label}' differ in '{key}'; compare "
                                      "runs trained on the same tasks and graph")
        self.test_tasks = test_tasks or self.cfg.eval.test_tasks
        self.rounds = max(self.learned[0].model.rounds, 1)
        self.rounds_per_step = max(self.cfg.model.hops, 1)
        self.tuned = tune_baselines(self.exp, list(baselines), self.rounds)

    def labels(self) -> list[str]:
        return [m.label for m in self.learned] + list(self.tuned)

    def run(self, scenario: Scenario, severities: list | None = None, repeats: int = 20,
            progress: bool = True) -> dict:
        """Every method on ``test_tasks`` meta-test tasks x ``repeats`` at every severity."""
        from tqdm import tqdm

        if repeats < 1:
            raise ConfigError(f"--repeats={repeats} must be >= 1")
        severities = list(severities if severities is not None else scenario.severities)
        bound = [scenario.bind(s) for s in severities]
        methods = {m.label: {"kind": m.method, "trained_on": m.trained_on, "mean": [], "std": [],
                             "std_over_repeats": [], "descent_fraction": []} for m in self.learned}
        methods.update({name: {"kind": "baseline", **self.tuned[name], "mean": [], "std": [],
                               "std_over_repeats": []} for name in self.tuned})
        total = sum(self.test_tasks * (repeats if b.random else 1) for b in bound)
        start = time.perf_counter()
        with tqdm(total=total, desc=f"stress {scenario.name}", unit="run", disable=not progress) as bar:
            for b in bound:
                accuracy, holds = self._severity(b, repeats, bar)
                for label, values in accuracy.items():
                    row = methods[label]
                    row["mean"].append(values.mean().item())
                    row["std"].append(values.std().item() if values.numel() > 1 else 0.0)
                    per_repeat = values.mean(0)
                    row["std_over_repeats"].append(per_repeat.std().item() if per_repeat.numel() > 1 else 0.0)
                    if label in holds:
                        row["descent_fraction"].append(holds[label])
        return {
            "scenario": scenario.name, "description": scenario.description, "severity_name": scenario.severity_name,
            "severities": severities, "repeats": repeats, "test_tasks": self.test_tasks,
            "async_mode": scenario.async_mode, "rounds": self.rounds, "methods": methods,
            "seconds": round(time.perf_counter() - start, 1),
        }

    @torch.no_grad()
    def _severity(self, bound: BoundScenario, repeats: int, bar: Any) -> tuple[dict[str, torch.Tensor], dict]:
        """(tasks, repeats) final accuracies per method and descent-holds fractions per learned model."""
        exp = self.exp if not bound.overrides else Experiment(bound.config(self.cfg))
        cfg, agents = exp.cfg, exp.data_agents()
        reps = repeats if bound.random else 1  # a deterministic scenario: every repetition is the same
        accuracy = {label: torch.zeros(self.test_tasks, reps) for label in self.labels()}
        holds: dict[str, list[torch.Tensor]] = {m.label: [] for m in self.learned}
        protect = SERVER if cfg.model.server else None
        for i in range(self.test_tasks):
            clean = exp.task("test", i)
            shift = exp.shift_for(clean)
            for rep in range(reps):
                ctx = Context(cfg.seed, clean.key, rep, clean.num_agents, protect, cfg.topology.gso)
                task = bound.task(ctx, clean)
                schedule = bound.schedule(ctx, shift)
                for m in self.learned:
                    trajectory = m.model(task, shift, cfg.seed, schedule, bound.async_mode)
                    accuracy[m.label][i, rep] = _mean_accuracy(trajectory.weights[-1], task, agents)
                    c = m.cfg.constraints
                    norms = gradient_norms(trajectory, task, c.gradient_on, cfg.seed, agents)
                    holds[m.label].append(descent_constraints(norms, c.form, c.epsilon) <= 0)
                finals = run_baselines(exp, self.tuned, task, shift, schedule, self.rounds, self.rounds_per_step,
                                       bound.async_mode)
                for name, value in finals.items():
                    accuracy[name][i, rep] = value
                bar.update(1)
        return accuracy, {label: torch.cat(h).float().mean().item() for label, h in holds.items()}


def _mean_accuracy(w: torch.Tensor, task: Any, agents: torch.Tensor | None) -> float:
    values = agent_accuracies(w, task.x_test, task.y_test)
    return (values[agents] if agents is not None else values).mean().item()


# ---------------------------------------------------------------- reports


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def stress_table(result: dict) -> str:
    """Markdown table: mean ± std of final accuracy per method and severity, descent-holds fractions."""
    methods = result["methods"]
    learned = [label for label, row in methods.items() if "descent_fraction" in row]
    header = [result["severity_name"], *methods, *(f"descent holds ({label})" for label in learned)]
    lines = [f"### {result['scenario']}: {result['description']}", "",
             f"{result['test_tasks']} meta-test tasks x {result['repeats']} repetitions, {result['rounds']} "
             f"communication rounds, async_mode={result['async_mode']}; final held-out accuracy, mean ± std over "
             "(task, repetition)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s, severity in enumerate(result["severities"]):
        cells = [f"{methods[m]['mean'][s]:.3f} ± {methods[m]['std'][s]:.3f}" for m in methods]
        cells += [f"{100 * methods[m]['descent_fraction'][s]:.1f} %" for m in learned]
        lines.append("| " + " | ".join([_fmt(severity), *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot_stress(result: dict, path: Path) -> None:
    """Accuracy vs severity per method, error bars = std over (task, repetition)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    severities = result["severities"]
    numeric = all(isinstance(s, int | float) for s in severities)
    x = severities if numeric else list(range(len(severities)))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, row in result["methods"].items():
        style = "o-" if row["kind"] != "baseline" else "s--"
        ax.errorbar(x, row["mean"], yerr=row["std"], fmt=style, capsize=3, label=f"{label} ({row['kind']})")
    if not numeric:
        ax.set_xticks(x, [str(s) for s in severities])
    ax.set(xlabel=result["severity_name"], ylabel="final held-out accuracy",
           title=f"{result['scenario']} ({result['test_tasks']} tasks x {result['repeats']} reps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_stress(result: dict, out: Path) -> Path:
    """Merge ``result`` into ``out/stress.json``, rewrite ``out/stress.md`` and ``out/plots/stress_<name>.png``."""
    (out / "plots").mkdir(parents=True, exist_ok=True)
    store = out / "stress.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    results[result["scenario"]] = result
    atomic_write(store, json.dumps(results, indent=2) + "\n")
    atomic_write(out / "stress.md", "\n".join(stress_table(r) for r in results.values()))
    plot = out / "plots" / f"stress_{result['scenario']}.png"
    plot_stress(result, plot)
    return plot


def matrix(bench: StressBench, scenarios: list[Scenario], repeats: int, progress: bool = True) -> dict:
    """Train scenario x test scenario: every model (and baseline) at each test scenario's representative severity."""
    rows: dict[str, dict] = {}
    for m in bench.learned:
        rows[m.label] = {"trained_on": m.trained_on, "kind": m.method, "cells": {}}
    for name in bench.tuned:
        rows[name] = {"trained_on": "-", "kind": "baseline", "cells": {}}
    for scenario in scenarios:
        severity = scenario.representative
        result = bench.run(scenario, [severity], repeats, progress)
        for label, row in result["methods"].items():
            cell = {"severity": severity, "mean": row["mean"][0], "std": row["std"][0]}
            if "descent_fraction" in row:
                cell["descent_fraction"] = row["descent_fraction"][0]
            rows[label]["cells"][scenario.name] = cell
    return {"test_scenarios": [s.name for s in scenarios], "repeats": repeats, "test_tasks": bench.test_tasks,
            "rows": rows}


def matrix_table(result: dict) -> str:
    """Markdown: one row per model (with the scenario it was trained under), one column per test scenario."""
    names = result["test_scenarios"]
    first = next(iter(result["rows"].values()))["cells"]
    header = ["model", "trained on", *(f"{n} @ {_fmt(first[n]['severity'])}" for n in names)]
    lines = [f"Train scenario x test scenario: final held-out accuracy, mean ± std over {result['test_tasks']} tasks "
             f"x {result['repeats']} repetitions", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in result["rows"].items():
        cells = [f"{row['cells'][n]['mean']:.3f} ± {row['cells'][n]['std']:.3f}" for n in names]
        lines.append("| " + " | ".join([f"{label} ({row['kind']})", row["trained_on"], *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_matrix(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "matrix.json", json.dumps(result, indent=2) + "\n")
    atomic_write(out / "matrix.md", matrix_table(result))
