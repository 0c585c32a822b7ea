"""Printed table, PNG plots and the image grid of an inpainting run (``surf.evaluation.inpainting``'s summary)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from surf.evaluation.summary import Descent, Summary  # noqa: E402
from surf.reporting.run_plots import plot_constraints, plot_training  # noqa: E402


def curves(summary: Summary) -> dict[str, dict[str, list[float]]]:
    """Every method's per-layer curves: the evaluated model first, then its comparisons."""
    return {summary.method: summary.per_layer, **{n: c.per_step for n, c in summary.comparisons.items()}}


def descents(summary: Summary) -> dict[str, Descent]:
    return {summary.method: summary.descent, **{n: c.descent for n, c in summary.comparisons.items()}}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(summary: Summary) -> str:
    """Per-layer PSNR and SSIM of every method, descent shares, then robustness and out-of-distribution finals."""
    per = curves(summary)
    names = list(per)
    width = max(12, *(len(n) + 1 for n in names))
    header = f"{'layer':>5} " + " ".join(f"{n:>{width}}" for n in names)
    ev = summary.eval
    lines = [f"surf: inpainting, meta-test per layer ({ev['test_images']} images {ev['image_shape']}, mask "
             f"{ev['mask']}, equal iterations)"]
    for metric, text, digits in (("psnr", "PSNR (dB) vs the clean image", 2), ("ssim", "SSIM", 3)):
        lines += [f"{text}:", header]
        for layer in range(summary.layers + 1):
            lines.append(f"{layer:>5} " + " ".join(f"{per[n][metric][layer]:>{width}.{digits}f}" for n in names))
    lines.append("per (image, layer) pair: " + "; ".join(
        f"{n}: PSNR non-decreasing {_percent(d.distance_nonincrease_fraction)}, objective non-increasing "
        f"{_percent(d.objective_nonincrease_fraction)}"
        + (f", constraint held {_percent(d.constraint_satisfied_fraction)}"
           if d.constraint_satisfied_fraction is not None else "")
        for n, d in descents(summary).items()))
    lines.append(f"long classical solve ({summary.reference['classical_long_iters']:.0f} FISTA iterations): PSNR "
                 f"{summary.reference['classical_long_psnr']:.2f} dB")
    for kind, text in (("layers", "noise on layer outputs 1..L-1"), ("input", "noise on the initial image x_0")):
        rob = summary.robustness[kind]
        lines.append(f"robustness, {text}: final PSNR (dB) at std " + " ".join(f"{d:g}" for d in rob.strengths))
        for name, points in rob.methods.items():
            lines.append(f"  {name:{width}s} " + " ".join(f"{p['final_psnr']:>7.2f}" for p in points))
    if summary.ood:
        lines.append("out of distribution: final PSNR (dB)")
        lines.append(f"  {'shift':>18} " + " ".join(f"{n:>{width}}" for n in names))
        for row in summary.ood:
            label = f"{row.shift}={row.value:g}"
            lines.append(f"  {label:>18} " + " ".join(f"{row.methods[n]['final_psnr']:>{width}.2f}" for n in names))
    return "\n".join(lines)


def write_plots(summary: Summary, rows: list[dict], folder: Path) -> list[Path]:
    """per_layer.png (PSNR, SSIM), robustness.png (final PSNR vs noise), constraints.png, training.png."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "per_layer.png", folder / "robustness.png", folder / "constraints.png", folder / "training.png"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, rep in curves(summary).items():
        axes[0].plot(rep["psnr"], "o-", ms=3, label=name)
        axes[1].plot(rep["ssim"], "o-", ms=3, label=name)
    axes[0].axhline(summary.reference["classical_long_psnr"], ls=":", color="gray", label="long DCT-FISTA")
    axes[0].set(xlabel="layer / iteration", ylabel="PSNR (dB)")
    axes[1].set(xlabel="layer / iteration", ylabel="SSIM")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (kind, text) in zip(axes, (("layers", "noise on layer outputs"), ("input", "noise on x_0")), strict=True):
        rob = summary.robustness[kind]
        for name, points in rob.methods.items():
            ax.plot(rob.strengths, [p["final_psnr"] for p in points], "o-", label=name)
        ax.set(xlabel="noise std per pixel", ylabel="final PSNR (dB)", title=text)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    plot_constraints(rows, paths[2])
    plot_training(rows, paths[3])
    return [p for p in paths if p.exists()]


def _show(ax: plt.Axes, image: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """One (C, H, W) image in [0, 1]: grey for one channel, RGB for three; pixels where ``mask`` is 0 in red."""
    image = image.clamp(0.0, 1.0)
    if mask is not None:
        image = torch.where(mask.bool(), image.expand(3, -1, -1), torch.tensor([1.0, 0.0, 0.0])[:, None, None])
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def write_image_grid(examples: dict[str, torch.Tensor], path: Path) -> Path:
    """Per example image, one row per method: clean, observation (missing pixels red), then x_1..x_L."""
    methods = [k for k in examples if k not in ("clean", "observed", "mask")]
    count, steps = len(examples["clean"]), examples[methods[0]].shape[1]
    rows = count * len(methods)
    fig, axes = plt.subplots(rows, steps + 1, figsize=(1.2 * (steps + 1), 1.2 * rows), squeeze=False)
    for i in range(count):
        for j, method in enumerate(methods):
            row = axes[i * len(methods) + j]
            _show(row[0], examples["clean"][i])
            _show(row[1], examples["observed"][i], examples["mask"][i])
            for layer in range(1, steps):
                _show(row[layer + 1], examples[method][i, layer])
            row[0].set_ylabel(method.replace("_", "\n"), fontsize=6, rotation=0, ha="right", va="center")
    for col, title in enumerate(["clean", "observed"] + [f"layer {k}" for k in range(1, steps)]):
        axes[0][col].set_title(title, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
