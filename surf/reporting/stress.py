"""Tables, plots and files of ``surf stress``: accuracy per method and severity (``stress.json``, ``stress.md``,
``plots/stress_<scenario>.png``) and the train x test matrix (``matrix.json``, ``matrix.md``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.evaluation.summary import StressMatrix, StressResult  # noqa: E402
from surf.reporting.figure_file import save_figure  # noqa: E402
from surf.utils.errors import ConfigError  # noqa: E402
from surf.utils.io import atomic_write  # noqa: E402
from surf.utils.typed import build  # noqa: E402


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def stress_table(result: StressResult) -> str:
    """Markdown table: mean ± std of final accuracy per method and severity, constraint-holds fractions and the
    shares of (task, repetition, layer) triples where each learned model's declared quantity decreased."""
    methods = result.methods
    learned = [label for label, row in methods.items() if row.constraint_satisfied_fraction is not None]
    declared = [label for label in learned if methods[label].declared_decrease_fraction]
    header = [result.severity_name, *methods, *(f"constraint holds ({label})" for label in learned),
              *(f"{methods[label].declared_quantity} decreased ({label})" for label in declared)]
    lines = [f"### {result.scenario}: {result.description}", "",
             f"{result.test_tasks} meta-test tasks x {result.repeats} repetitions, {result.rounds} "
             f"communication rounds, async_mode={result.async_mode}; final held-out accuracy, mean ± std over "
             "(task, repetition)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s, severity in enumerate(result.severities):
        cells = [f"{row.mean[s]:.3f} ± {row.std[s]:.3f}" for row in methods.values()]
        cells += [f"{100 * methods[m].constraint_satisfied_fraction[s]:.1f} %" for m in learned]
        cells += [f"{100 * methods[m].declared_decrease_fraction[s]:.1f} %" for m in declared]
        lines.append("| " + " | ".join([_fmt(severity), *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot_stress(result: StressResult, path: Path) -> None:
    """Accuracy vs severity per method, error bars = std over (task, repetition)."""
    severities = result.severities
    numeric = all(isinstance(s, int | float) for s in severities)
    x = severities if numeric else list(range(len(severities)))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, row in result.methods.items():
        style = "o-" if row.kind != "baseline" else "s--"
        ax.errorbar(x, row.mean, yerr=row.std, fmt=style, capsize=3, label=f"{label} ({row.kind})")
    if not numeric:
        ax.set_xticks(x, [str(s) for s in severities])
    ax.set(xlabel=result.severity_name, ylabel="final held-out accuracy",
           title=f"{result.scenario} ({result.test_tasks} tasks x {result.repeats} reps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def read_stress(store: Path) -> dict[str, StressResult]:
    """The scenarios already in ``stress.json`` (none when it does not exist); an unreadable one is a one-line
    error naming it (``surf stress`` reads it before any work: a new result is merged into it)."""
    if not store.exists():
        return {}
    try:
        raw = json.loads(store.read_text())
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a mapping of scenarios, got {type(raw).__name__}")
        return {name: build(StressResult, entry) for name, entry in raw.items()}
    except (OSError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{store} is not a readable stress record ({str(exc)[:120]}); move it away or choose "
                          "another --out") from None


def write_stress(result: StressResult, out: Path) -> Path:
    """Merge ``result`` into ``out/stress.json``, rewrite ``out/stress.md`` and ``out/plots/stress_<name>.png``."""
    (out / "plots").mkdir(parents=True, exist_ok=True)
    store = out / "stress.json"
    results = {**read_stress(store), result.scenario: result}
    atomic_write(store, json.dumps({k: dataclasses.asdict(v) for k, v in results.items()}, indent=2) + "\n")
    atomic_write(out / "stress.md", "\n".join(stress_table(r) for r in results.values()))
    plot = out / "plots" / f"stress_{result.scenario}.png"
    plot_stress(result, plot)
    return plot


def matrix_table(result: StressMatrix) -> str:
    """Markdown: one row per model (with the scenario it was trained under), one column per test scenario."""
    names = result.test_scenarios
    first = next(iter(result.rows.values())).cells
    header = ["model", "trained on", *(f"{n} @ {_fmt(first[n].severity)}" for n in names)]
    lines = [f"Train scenario x test scenario: final held-out accuracy, mean ± std over {result.test_tasks} tasks "
             f"x {result.repeats} repetitions", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in result.rows.items():
        cells = [f"{row.cells[n].mean:.3f} ± {row.cells[n].std:.3f}" for n in names]
        lines.append("| " + " | ".join([f"{label} ({row.kind})", row.trained_on, *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_matrix(result: StressMatrix, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "matrix.json", json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    atomic_write(out / "matrix.md", matrix_table(result))
