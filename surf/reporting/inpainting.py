"""Printed table, PNG plots and the image grid of an inpainting run (``surf.evaluation.inpainting``'s summary)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from surf.evaluation.summary import Summary  # noqa: E402
from surf.reporting.comparisons import descents, layer_table, plot_layers, plot_robustness, shift_tables  # noqa: E402
from surf.reporting.figure_file import save_figure  # noqa: E402
from surf.reporting.run_plots import plot_constraints, plot_training  # noqa: E402


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


TEXTS = {"layers": "noise on layer outputs 1..L-1", "input": "noise on the initial image x_0"}


def format_table(summary: Summary) -> str:
    """Per-layer PSNR and SSIM of every method, descent shares, then robustness and out-of-distribution finals."""
    ev = summary.eval
    lines = [f"surf: inpainting, meta-test per layer ({ev['test_images']} images {ev['image_shape']}, mask "
             f"{ev['mask']}, equal iterations)",
             *layer_table(summary, "psnr", "PSNR (dB) vs the clean image", 2),
             *layer_table(summary, "ssim", "SSIM", 3)]
    lines.append("per (image, layer) pair: " + "; ".join(
        f"{n}: PSNR non-decreasing {_percent(d.distance_nonincrease_fraction)}, objective non-increasing "
        f"{_percent(d.objective_nonincrease_fraction)}"
        + (f", constraint held {_percent(d.constraint_satisfied_fraction)}"
           if d.constraint_satisfied_fraction is not None else "")
        for n, d in descents(summary).items()))
    lines.append(f"long classical solve ({summary.reference['classical_long_iters']:.0f} FISTA iterations): PSNR "
                 f"{summary.reference['classical_long_psnr']:.2f} dB")
    return "\n".join(lines + shift_tables(summary, "final_psnr", "dB", TEXTS))


def write_plots(summary: Summary, rows: list[dict], folder: Path) -> list[Path]:
    """per_layer.png (PSNR, SSIM), robustness.png (final PSNR vs noise), constraints.png, training.png."""
    paths = [folder / "per_layer.png", folder / "robustness.png", folder / "constraints.png", folder / "training.png"]
    plot_layers(summary, [("psnr", "PSNR (dB)", "linear"), ("ssim", "SSIM", "linear")], paths[0],
                {0: (summary.reference["classical_long_psnr"], "long DCT-FISTA")})
    plot_robustness(summary, "final_psnr", "final PSNR (dB)", TEXTS, "noise std per pixel", paths[1])
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
    return save_figure(fig, path)
