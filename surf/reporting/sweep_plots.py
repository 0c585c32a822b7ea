"""PNG plots of a sweep report (``surf report``): per-layer curves, accuracy vs rounds / a scalar / topology, and the
ablation's accuracy per cell clean and under drops."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.reporting.figure_file import save_figure  # noqa: E402
from surf.reporting.sweep_data import (  # noqa: E402
    acc,
    acc_rel,
    baseline_accuracy,
    graph_label,
    mean_baseline_curves,
    mean_curve,
)


def plot_per_layer_groups(groups: list, path: Path, paper_ref: dict | None, xlabel: str,
                          label: Callable | None = None) -> None:
    """Accuracy (plain solid, relabelled dashed) and loss per layer for each group; the paper's curves dotted."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for g in groups:
        name = label(g) if label else f"{g.label} ({g.first.summary.method})"
        line, = axes[0].plot(mean_curve(g, "per_layer", "accuracy"), "o-", label=f"{name} plain")
        axes[0].plot(mean_curve(g, "per_layer_relabelled", "accuracy"), "s--", color=line.get_color(),
                     label=f"{name} relabelled")
        axes[1].plot(mean_curve(g, "per_layer", "loss"), "o-", color=line.get_color(), label=name)
    for method, ref in (paper_ref or {}).items():
        axes[0].plot(ref["accuracy"], ":", color="gray" if method == "surf" else "black", label=f"paper {method}")
        axes[1].plot([15 * v for v in ref["loss_code_scale"]], ":", color="gray" if method == "surf" else "black",
                     label=f"paper {method} (x15: CE scale)")
    axes[0].set(xlabel=xlabel, ylabel="held-out accuracy")
    axes[1].set(xlabel=xlabel, ylabel="held-out loss (cross-entropy)", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_rounds(groups: list, path: Path, relative_to: float | None = None) -> None:
    """Accuracy vs communication rounds: the unrolled layers (x = layer * K) and each baseline's per-round curve."""
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    scale = relative_to or 1.0
    for ax, g in zip(axes[0], groups, strict=True):
        s = g.first.summary
        acc = mean_curve(g, "per_layer", "accuracy")
        per = max(s.rounds, 1) / max(len(acc) - 1, 1)
        ax.plot([i * per for i in range(len(acc))], [a / scale for a in acc], "o-", lw=2, label=f"{s.method} plain")
        rel = mean_curve(g, "per_layer_relabelled", "accuracy")
        ax.plot([i * per for i in range(len(rel))], [a / scale for a in rel], "s--", lw=2,
                label=f"{s.method} relabelled")
        for name, curve in mean_baseline_curves(g).items():  # over the same seeds as the model's curve
            if name != "centralized":
                ax.plot(range(len(curve)), [a / scale for a in curve], alpha=0.8, label=f"{name} (tuned)")
        ax.set(xlabel="communication rounds", ylabel="accuracy" + (" / centralized" if relative_to else ""),
               title=graph_label(g), xscale="symlog")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_scalar(groups: list, get_x: Callable, x_name: str, path: Path, ref_for: Callable) -> None:
    """Final accuracy ± 95 % CI over seeds vs a scalar (alpha, n_async) per method, plain and relabelled; the paper's
    dotted; the baselines evaluated with the first method (means over the same seeds), thin."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_method: dict[str, list] = {}
    for g in groups:
        if math.isfinite(get_x(g.first)):  # e.g. alpha = inf marks the as-trained (non-Dirichlet) tasks
            by_method.setdefault(g.first.summary.method, []).append(g)
    for method, items in by_method.items():
        items.sort(key=lambda g: get_x(g.first))
        xs = [get_x(g.first) for g in items]
        stats = [g.stat(acc) for g in items]
        bar = ax.errorbar(xs, [s.mean for s in stats], yerr=[0 if s.ci != s.ci else s.ci for s in stats], fmt="o-",
                          capsize=3, label=f"{method} plain")
        ax.plot(xs, [g.stat(acc_rel).mean for g in items], "s--", color=bar[0].get_color(),
                label=f"{method} relabelled")
        ref = [(x, ref_for(method, x, "surf")) for x in xs]
        ref = [(x, v) for x, v in ref if v is not None]
        if ref:
            ax.plot(*zip(*ref, strict=True), "x:", color=bar[0].get_color(), label=f"paper {method}")
    lead = next(iter(by_method.values()), [])  # baselines are the same for every method: draw them once
    for name in lead[0].first.summary.comparisons if lead else []:
        points = [(get_x(g.first), g.stat(baseline_accuracy(name)).mean) for g in lead if g.has_baseline(name)]
        rounds = lead[0].first.summary.comparisons[name].steps
        ax.plot(*zip(*points, strict=True), "^-", lw=0.8, alpha=0.7, label=f"{name} ({rounds} rounds, tuned)")
    ax.set(xlabel=x_name, ylabel="final held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_topology(points: list[dict], path: Path) -> None:
    """Honest (relabelled) accuracy vs spectral gap and vs bytes sent, SURF and the best tuned baseline."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, xlabel in ((axes[0], "spectral_gap", "spectral gap 1 - |lambda_2(S)|"),
                            (axes[1], "surf_bytes", "bytes sent (float32 messages)")):
        xs = [p[key] for p in points]
        ax.scatter(xs, [p["surf"] for p in points], label="SURF (relabelled)", zorder=3)
        for p, x in zip(points, xs, strict=True):
            ax.annotate(p["graph"], (x, p["surf"]), fontsize=6)
        best = [(x, p["best"][1]) for p, x in zip(points, xs, strict=True) if p["best"]]
        if best:
            ax.scatter(*zip(*best, strict=True), marker="x", label="best tuned baseline, same rounds")
        if key == "surf_bytes":
            long = [(p["long_bytes"], p["long"][1]) for p in points if p["long"]]
            if long:
                ax.scatter(*zip(*long, strict=True), marker="+", label="best tuned baseline, 10x rounds")
        ax.set(xlabel=xlabel, ylabel="held-out accuracy", xscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_ablation(by_label: dict[str, dict[int, Any]], drops: int, reference: str, path: Path) -> None:
    """Final held-out accuracy (plain) per ablation cell, clean and under ``drops`` dropped agents, ± 95 % CI over
    seeds; the ``reference`` baseline (tuned heavy-ball DGD) as vertical lines, clean solid and dropped dashed."""
    labels = list(by_label)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.5))
    ys = range(len(labels))
    for offset, n, name in ((-0.18, 0, "clean"), (0.18, drops, f"{drops} dropped")):
        if n == 0 and name != "clean":
            continue
        stats = [by_label[label][n].stat(acc) if n in by_label[label] else None for label in labels]
        points = [(s.mean, 0.0 if s.ci != s.ci else s.ci, y + offset) for s, y in zip(stats, ys, strict=True) if s]
        if points:
            means, cis, at = zip(*points, strict=True)
            ax.errorbar(means, at, xerr=cis, fmt="o", capsize=3, label=name)
        base = next((by_label[label][n] for label in labels if n in by_label[label]), None)
        if base is not None and all(reference in e.summary.comparisons for e in base.entries):
            level = base.stat(lambda s: s.comparisons[reference].final["accuracy"]).mean
            ax.axvline(level, ls="-" if n == 0 else "--", color="gray", lw=1, label=f"{reference} ({name})")
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="final held-out accuracy (plain)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
