"""Printed table and PNG plots of a sparse-coding run (``surf.evaluation.sparse.evaluate``'s summary)."""

from __future__ import annotations

from pathlib import Path

from surf.evaluation.summary import Summary
from surf.reporting.comparisons import descents, layer_table, plot_layers, plot_robustness, shift_tables
from surf.reporting.run_plots import plot_constraints, plot_training

TEXTS = {"layers": "noise on intermediate outputs", "input": "noise on the input y"}


def format_table(summary: Summary) -> str:
    """Per-layer NMSE (dB) and objective for every method, then robustness and out-of-distribution finals."""
    lines = [f"surf: sparse coding, meta-test per layer ({summary.eval['test_signals']} signals, equal iterations)",
             *layer_table(summary, "nmse_db", "NMSE (dB) vs the LASSO optimum x*", 2),
             *layer_table(summary, "objective", f"mean objective F(x_l) (F(x*) = "
                                                f"{summary.reference['optimum_objective']:.4f})", 4),
             "objective non-increasing in (signal, layer) pairs: " + ", ".join(
                 f"{n} {100 * d.objective_nonincrease_fraction:.1f}%" for n, d in descents(summary).items()),
             *shift_tables(summary, "final_nmse_db", "dB", TEXTS)]
    return "\n".join(lines)


def write_plots(summary: Summary, rows: list[dict], folder: Path) -> list[Path]:
    """per_layer.png (NMSE, objective), robustness.png (final NMSE vs strength), constraints.png, training.png."""
    paths = [folder / "per_layer.png", folder / "robustness.png", folder / "constraints.png", folder / "training.png"]
    plot_layers(summary, [("nmse_db", "NMSE vs x* (dB)", "linear"), ("objective", "mean LASSO objective", "log")],
                paths[0], {1: (summary.reference["optimum_objective"], "F(x*)")})
    plot_robustness(summary, "final_nmse_db", "final NMSE (dB)", TEXTS,
                    "perturbation strength delta (0 plotted at 1e-3)", paths[1], log_x=True)
    plot_constraints(rows, paths[2])
    plot_training(rows, paths[3])
    return [p for p in paths if p.exists()]
