"""The overview of a sweep of the LISTA (``sparse_coding``) or GLOW-Prox (``inpainting``) family: the model's final
metrics over seeds, the share of (test item, layer) pairs where its objective did not increase, each baseline's
headline metric with the model's paired improvement over it (the same seed: the same test signals or images), and
the per-layer curves of every group. The classifier's overview is :func:`surf.reporting.figures.overview`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.evaluation.summary import Summary  # noqa: E402
from surf.reporting.figure_file import save_figure  # noqa: E402
from surf.reporting.figures import baseline_names, pm, signed, table  # noqa: E402
from surf.reporting.sweep_data import Group, mean_baseline_curves, mean_curve  # noqa: E402

METRICS = {  # family: its final metrics (key, label, higher is better), the headline first
    "sparse_coding": (("nmse_db", "NMSE (dB)", False), ("objective", "objective F(x_L)", False)),
    "inpainting": (("psnr", "PSNR (dB)", True), ("ssim", "SSIM", True)),
}
STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))  # one per baseline (3 in each family)


def _final(key: str, baseline: str | None = None) -> Callable[[Summary], float]:
    """The getter of the model's (or baseline ``baseline``'s) final ``key`` in a summary."""
    if baseline is None:
        return lambda s: s.final[key]
    return lambda s: s.comparisons[baseline].final[key]


def baseline_cell(g: Group, name: str, key: str, higher: bool) -> str:
    """``value (R iterations); better by Δ``: Δ = how much better the model is than baseline ``name`` on the same seed
    (model − baseline where higher is better, baseline − model where lower is), ✓ when its CI is above 0."""
    if not g.has_baseline(name):
        return "—"
    model, baseline = _final(key), _final(key, name)
    better = g.paired(model, baseline) if higher else g.paired(baseline, model)
    return f"{pm(g.stat(baseline))} ({g.first.summary.comparisons[name].steps} it.); better by {signed(better)}"


def overview(groups: list[Group], plots: Path) -> list[str]:
    """The table of every (trained cell, condition) group of one family, and ``plots/per_layer.png``."""
    family = groups[0].first.summary.family
    metrics, names = METRICS[family], baseline_names(groups)
    key, label, higher = metrics[0]
    header = ["trained cell", "evaluated as", "method", "layers", "seeds", *[m[1] for m in metrics],
              "objective non-increasing %"] + [f"{n}: {label}; model better by (paired)" for n in names]
    rows = []
    for g in groups:
        s = g.first.summary
        shares = [e.summary.descent.objective_nonincrease_fraction for e in g.entries]
        descent = "—" if None in shares else f"{100 * sum(shares) / len(shares):.1f}"
        rows.append([g.label, g.cond_label, s.method, s.layers, len(g.entries),
                     *[pm(g.stat(_final(m))) for m, _, _ in metrics], descent,
                     *[baseline_cell(g, n, key, higher) for n in names]])
    path = plots / "per_layer.png"
    plot_groups(groups, metrics, path)
    return [f"Better by = the model's paired advantage over the baseline on the same seed, in {label} "
            f"({'higher' if higher else 'lower'} is better); ✓ = its 95 % CI is above 0.", "",
            *table(header, rows), "", f"![per layer]({path.relative_to(plots.parent)})"]


def plot_groups(groups: list[Group], metrics: tuple, path: Path) -> None:
    """One panel per metric: each group's per-layer mean over seeds (solid) and its baselines' (same colour, one
    dash style per baseline)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    for ax, (key, label, _) in zip(axes[0], metrics, strict=True):
        for g in groups:
            name = g.label if g.cond_label == "as trained" else f"{g.label} ({g.cond_label})"
            line, = ax.plot(mean_curve(g, "per_layer", key), "o-", label=f"{name}: {g.first.summary.method}")
            for i, (baseline, curve) in enumerate(mean_baseline_curves(g, key).items()):
                ax.plot(curve, STYLES[i % len(STYLES)], color=line.get_color(), alpha=0.7, label=f"{name}: {baseline}")
        ax.set(xlabel="layer / iteration", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    save_figure(fig, path)
