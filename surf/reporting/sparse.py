"""Printed table and PNG plots of a sparse-coding run (``surf.evaluation.sparse.evaluate``'s summary)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.evaluation.summary import Descent, Summary  # noqa: E402
from surf.reporting.run_plots import plot_constraints, plot_training  # noqa: E402


def curves(summary: Summary) -> dict[str, dict[str, list[float]]]:
    """Every method's per-layer curves: the evaluated model first, then its comparisons."""
    return {summary.method: summary.per_layer, **{n: c.per_step for n, c in summary.comparisons.items()}}


def descents(summary: Summary) -> dict[str, Descent]:
    return {summary.method: summary.descent, **{n: c.descent for n, c in summary.comparisons.items()}}


def format_table(summary: Summary) -> str:
    """Per-layer NMSE (dB) and objective for every method, then robustness and out-of-distribution finals."""
    per = curves(summary)
    names = list(per)
    width = max(12, *(len(n) + 1 for n in names))
    header = f"{'layer':>5} " + " ".join(f"{n:>{width}}" for n in names)
    lines = [f"surf: sparse coding, meta-test per layer ({summary.eval['test_signals']} signals, equal iterations)",
             "NMSE (dB) vs the LASSO optimum x*:", header]
    for layer in range(summary.layers + 1):
        lines.append(f"{layer:>5} " + " ".join(f"{per[n]['nmse_db'][layer]:>{width}.2f}" for n in names))
    lines += [f"mean objective F(x_l) (F(x*) = {summary.reference['optimum_objective']:.4f}):", header]
    for layer in range(summary.layers + 1):
        lines.append(f"{layer:>5} " + " ".join(f"{per[n]['objective'][layer]:>{width}.4f}" for n in names))
    lines.append("objective non-increasing in (signal, layer) pairs: " + ", ".join(
        f"{n} {100 * d.objective_nonincrease_fraction:.1f}%" for n, d in descents(summary).items()))
    for kind, text in (("layers", "noise on intermediate outputs"), ("input", "noise on the input y")):
        rob = summary.robustness[kind]
        lines.append(f"robustness, {text}: final NMSE (dB) at strength " + " ".join(f"{d:g}" for d in rob.strengths))
        for name, points in rob.methods.items():
            lines.append(f"  {name:{width}s} " + " ".join(f"{p['final_nmse_db']:>7.2f}" for p in points))
    if summary.ood:
        lines.append("out of distribution: final NMSE (dB)")
        lines.append(f"  {'shift':>18} " + " ".join(f"{n:>{width}}" for n in names))
        for row in summary.ood:
            label = f"{row.shift}={row.value:g}"
            lines.append(f"  {label:>18} " + " ".join(f"{row.methods[n]['final_nmse_db']:>{width}.2f}"
                                                     for n in names))
    return "\n".join(lines)


def write_plots(summary: Summary, rows: list[dict], folder: Path) -> list[Path]:
    """per_layer.png (NMSE, objective), robustness.png (final NMSE vs strength), constraints.png, training.png."""
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, rep in curves(summary).items():
        axes[0].plot(rep["nmse_db"], "o-", ms=3, label=name)
        axes[1].plot(rep["objective"], "o-", ms=3, label=name)
    axes[1].axhline(summary.reference["optimum_objective"], ls=":", color="gray", label="F(x*)")
    axes[0].set(xlabel="layer / iteration", ylabel="NMSE vs x* (dB)")
    axes[1].set(xlabel="layer / iteration", ylabel="mean LASSO objective", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [folder / "per_layer.png", folder / "robustness.png", folder / "constraints.png", folder / "training.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (kind, text) in zip(axes, (("layers", "noise on layer outputs"), ("input", "noise on y")), strict=True):
        rob = summary.robustness[kind]
        x = [max(d, 1e-3) for d in rob.strengths]
        for name, points in rob.methods.items():
            ax.plot(x, [p["final_nmse_db"] for p in points], "o-", label=name)
        ax.set(xscale="log", xlabel="perturbation strength delta (0 plotted at 1e-3)", ylabel="final NMSE (dB)",
               title=text)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    plot_constraints(rows, paths[2])
    plot_training(rows, paths[3])
    return [p for p in paths if p.exists()]
