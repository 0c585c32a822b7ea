"""What the families that compare methods side by side (sparse coding, inpainting) print and plot the same way:
every method's per-layer curves, descent shares, finals under perturbations of growing strength and on
out-of-distribution problems."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.evaluation.summary import Descent, Summary  # noqa: E402
from surf.reporting.figure_file import save_figure  # noqa: E402

PERTURBATIONS = ("layers", "input")  # the robustness kinds, in the order they are shown


def curves(summary: Summary) -> dict[str, dict[str, list[float]]]:
    """Every method's per-layer curves: the evaluated model first, then its comparisons."""
    return {summary.method: summary.per_layer, **{n: c.per_step for n, c in summary.comparisons.items()}}


def descents(summary: Summary) -> dict[str, Descent]:
    return {summary.method: summary.descent, **{n: c.descent for n, c in summary.comparisons.items()}}


def layer_table(summary: Summary, metric: str, title: str, digits: int) -> list[str]:
    """``title``, then one row per layer with every method's ``metric``."""
    per = curves(summary)
    width = column_width(per)
    lines = [f"{title}:", f"{'layer':>5} " + " ".join(f"{n:>{width}}" for n in per)]
    for layer in range(summary.layers + 1):
        lines.append(f"{layer:>5} " + " ".join(f"{per[n][metric][layer]:>{width}.{digits}f}" for n in per))
    return lines


def column_width(per: dict) -> int:
    return max(12, *(len(n) + 1 for n in per))


def shift_tables(summary: Summary, final: str, unit: str, texts: dict[str, str]) -> list[str]:
    """Final ``final`` (e.g. final_psnr) per perturbation strength (``texts``: kind -> what was perturbed), then per
    out-of-distribution shift."""
    names = list(curves(summary))
    width = column_width(curves(summary))
    lines = []
    for kind in PERTURBATIONS:
        rob = summary.robustness[kind]
        lines.append(f"robustness, {texts[kind]}: {final.replace('_', ' ')} ({unit}) at strength "
                     + " ".join(f"{d:g}" for d in rob.strengths))
        for name, points in rob.methods.items():
            lines.append(f"  {name:{width}s} " + " ".join(f"{p[final]:>7.2f}" for p in points))
    if summary.ood:
        lines.append(f"out of distribution: {final.replace('_', ' ')} ({unit})")
        lines.append(f"  {'shift':>18} " + " ".join(f"{n:>{width}}" for n in names))
        for row in summary.ood:
            label = f"{row.shift}={row.value:g}"
            lines.append(f"  {label:>18} " + " ".join(f"{row.methods[n][final]:>{width}.2f}" for n in names))
    return lines


def plot_layers(summary: Summary, panels: list[tuple[str, str, str]], path: Path,
                references: dict[int, tuple[float, str]] | None = None) -> None:
    """One panel per (metric, y label, y scale) with every method's per-layer curve; ``references``: panel index
    -> (value, label) drawn as a dotted line."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for name, rep in curves(summary).items():
        for ax, (metric, _, _) in zip(axes[0], panels, strict=True):
            ax.plot(rep[metric], "o-", ms=3, label=name)
    for i, (ax, (_, ylabel, yscale)) in enumerate(zip(axes[0], panels, strict=True)):
        if references and i in references:
            ax.axhline(references[i][0], ls=":", color="gray", label=references[i][1])
        ax.set(xlabel="layer / iteration", ylabel=ylabel, yscale=yscale)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_robustness(summary: Summary, final: str, ylabel: str, texts: dict[str, str], xlabel: str, path: Path,
                    log_x: bool = False) -> None:
    """Final ``final`` against the perturbation strength, one panel per kind of perturbation (0 at 1e-3 on a log
    axis); no plot without strengths (an empty ``perturb_strengths``)."""
    if not any(summary.robustness[kind].strengths for kind in PERTURBATIONS):
        return
    fig, axes = plt.subplots(1, len(PERTURBATIONS), figsize=(11, 4))
    for ax, kind in zip(axes, PERTURBATIONS, strict=True):
        rob = summary.robustness[kind]
        x = [max(d, 1e-3) for d in rob.strengths] if log_x else rob.strengths
        for name, points in rob.methods.items():
            ax.plot(x, [p[final] for p in points], "o-", label=name)
        ax.set(xscale="log" if log_x else "linear", xlabel=xlabel, ylabel=ylabel, title=texts[kind])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


