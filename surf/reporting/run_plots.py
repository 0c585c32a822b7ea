"""PNG plots of a run: per-layer accuracy/loss against the baselines, accuracy vs rounds and bytes, constraints and
duals, training curves, and the messages a Flower deployment relayed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surf.evaluation.summary import Summary  # noqa: E402
from surf.reporting.figure_file import save_figure  # noqa: E402


def plot_per_layer(summary: Summary, path: Path) -> None:
    """Held-out accuracy and loss against communication rounds: SURF layers vs DGD and heavy-ball per round."""
    rounds_per_layer = max(summary.rounds, 1) / max(summary.layers, 1)
    x_layers = [layer * rounds_per_layer for layer in range(summary.layers + 1)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(x_layers, summary.per_layer[metric], "o-", label=f"{summary.method} (plain)")
        ax.plot(x_layers, summary.per_layer_relabelled[metric], "s--", label=f"{summary.method} (relabelled)")
        for name, base in summary.comparisons.items():
            how = "paper" if base.preset.startswith("paper") else "tuned"
            label = f"{name} ({how}, step {base.hyper['step']:g})"
            if base.steps > summary.rounds:  # a longer-run reference: its final value as a line
                ax.axhline(base.final[metric], ls=":", color="gray", label=f"{label} after {base.steps} rounds")
                continue
            curve = base.per_step[metric]
            ax.plot(range(len(curve)), curve, label=label, alpha=0.8)
        ax.set_xlabel("communication rounds")
        ax.set_ylabel(f"held-out {metric}")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"meta-test tasks ({summary.eval['test_tasks']}), n_async={summary.eval['n_async']}")
    save_figure(fig, path)


def plot_communication(summary: Summary, path: Path) -> None:
    """Held-out accuracy against communication rounds and against bytes sent, for the unrolled model and every
    baseline (per round, up to its own length); centralized training (no communication) as a ceiling line."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    rounds = [layer * summary.rounds / max(summary.layers, 1) for layer in range(summary.layers + 1)]
    curves = [(summary.method, rounds, summary.per_layer["accuracy"], summary.communication, "o-")]
    for name, base in summary.comparisons.items():
        if base.communication is not None and base.communication.bytes_per_round == 0:
            for ax in axes:
                ax.axhline(base.final["accuracy"], ls=":", color="k", label=f"{name} ceiling ({base.steps} steps)")
            continue
        curve = base.per_step["accuracy"]
        label = f"{name} (paper preset)" if base.preset.startswith("paper") else name
        curves.append((label, list(range(len(curve))), curve, base.communication, "-"))
    for name, x, accuracy, cost, style in curves:
        axes[0].plot(x, accuracy, style, label=name, alpha=0.85, ms=4)
        if cost:
            bytes_sent = [r * cost.bytes_per_round for r in x]
            axes[1].plot(bytes_sent[1:], accuracy[1:], style, label=name, alpha=0.85, ms=4)
    axes[0].set(xlabel="communication rounds", ylabel="held-out accuracy")
    axes[1].set(xlabel="bytes sent in total (all agents, float32)", ylabel="held-out accuracy", xscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"accuracy vs communication, meta-test tasks ({summary.eval['test_tasks']})")
    save_figure(fig, path)


def plot_constraints(rows: list[dict], path: Path) -> None:
    """Constraint slacks c_l and duals lambda_l per layer at the end of training, and lambda over training."""
    train = [r for r in rows if "slacks" in r]
    if not train:
        return
    last = train[-1]
    layers = range(1, len(last["slacks"]) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].bar(layers, last["slacks"])
    axes[0].axhline(0.0, color="k", lw=0.8)
    axes[0].set(xlabel="layer l", ylabel="slack c_l (<= 0 satisfied)", title=f"step {last['step']}")
    axes[1].bar(layers, last["lambda"])
    axes[1].set(xlabel="layer l", ylabel="lambda_l")
    steps = [r["step"] for r in train]
    for layer in range(len(last["lambda"])):
        axes[2].plot(steps, [r["lambda"][layer] for r in train], label=f"l={layer + 1}")
    axes[2].set(xlabel="meta-step", ylabel="lambda_l")
    axes[2].legend(fontsize=6, ncol=2)
    save_figure(fig, path)


def plot_training(rows: list[dict], path: Path) -> None:
    """Training held-out loss per meta-step and the validation loss used for model selection."""
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], alpha=0.5, label="train task loss (W_L)")
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss")
    ax.set(xlabel="meta-step", ylabel="held-out loss", yscale="log")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    save_figure(fig, path)


def write_plots(summary: Summary, rows: list[dict], folder: Path) -> list[Path]:
    """per_layer.png, constraints.png (when there are training rows), training.png and communication.png."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "per_layer.png", folder / "constraints.png", folder / "training.png",
             folder / "communication.png"]
    plot_per_layer(summary, paths[0])
    plot_constraints(rows, paths[1])
    plot_training(rows, paths[2])
    plot_communication(summary, paths[3])
    return [p for p in paths if p.exists()]


def plot_relay_traffic(summaries: dict[str, dict], path: Path) -> None:
    """Bytes per communication round and the distribution of bytes per edge, one line per method."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, summary in summaries.items():
        rounds = [r for r in summary["per_round"] if r["kind"] in ("hop", "prime")]
        axes[0].plot(range(1, len(rounds) + 1), [r["bytes"] / 1e6 for r in rounds], "o-", ms=3, label=name)
        axes[1].hist([e["bytes"] / 1e6 for e in summary["per_edge"]], bins=30, alpha=0.6, label=name)
    axes[0].set_xlabel("communication round")
    axes[0].set_ylabel("neighbour messages relayed (MB)")
    axes[1].set_xlabel("MB per edge over the run")
    axes[1].set_ylabel("edges")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
