"""What the primal-dual trainer needs from a task family (decentralized classifier, LISTA sparse coding, ...).

The meta-training loop (``surf.trainer``) is written once against :class:`TaskFamily`; a family supplies its tasks,
its unrolled model and, per task, the terms of the Lagrangian (paper eq. 4). ``surf.experiment.Experiment`` is the
decentralized-classifier family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from surf.config import Config


@dataclass
class TaskTerms:
    """What one unrolled task contributes to the Lagrangian, plus per-layer diagnostics for ``metrics.jsonl``."""

    objective: torch.Tensor  # the task's loss at the last layer, differentiable
    slacks: torch.Tensor  # c_1..c_L (differentiable when constrained)
    values: torch.Tensor  # measured a_0..a_L (detached): gradient norms or distances
    layer_metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (L+1,) detached, e.g. accuracy


class TaskFamily(Protocol):
    """A task distribution with its unrolled model: everything the trainer calls."""

    cfg: Config
    device: torch.device

    @property
    def num_constraints(self) -> int:
        """L: one descent constraint (and one dual variable) per layer."""

    def build_model(self) -> torch.nn.Module:
        """A freshly initialized unrolled model on ``device``."""

    def task(self, split: str, index: int, relabel: bool = False) -> Any:
        """Task ``index`` of ``split`` (train | val | test), rebuilt from its key alone."""

    def task_terms(self, model: torch.nn.Module, task: Any) -> TaskTerms:
        """Unroll ``model`` on ``task``: objective, constraint slacks and per-layer metrics."""


@dataclass(frozen=True)
class FamilyReport:
    """A family's meta-test evaluation, printed table and plots (what ``surf run`` / ``surf eval`` call)."""

    evaluate: Callable[[Any, torch.nn.Module, Path | None, bool], dict]  # (family, model, run dir, progress)
    format_table: Callable[[dict], str]
    write_plots: Callable[[dict, list[dict], Path], list[Path]]  # (summary, metrics rows, plots folder)
    describe: Callable[[Any], str]  # one line for the startup message


def build_family(cfg: Config) -> TaskFamily:
    """The task family named by ``cfg.family``; validates its data before anything is written."""
    if cfg.family == "sparse_coding":
        from surf.sparse.family import SparseCodingFamily

        return SparseCodingFamily(cfg)
    from surf.experiment import Experiment

    return Experiment(cfg)


def family_report(cfg: Config) -> FamilyReport:
    """The evaluation / table / plot hooks of ``cfg.family``."""
    if cfg.family == "sparse_coding":
        from surf.sparse import evaluate, report

        return FamilyReport(evaluate.evaluate, report.format_table, report.write_plots, lambda fam: fam.describe())
    from surf.evaluate import evaluate as evaluate_decentralized
    from surf.plots import write_plots
    from surf.tables import format_table

    def describe(exp: Any) -> str:
        gap = exp.topology.spectral().get("spectral_gap")
        return f"graph '{cfg.topology.name}'" + (f", spectral gap {gap:.4f}" if gap is not None else "")

    return FamilyReport(lambda exp, model, run_path, progress: evaluate_decentralized(exp, model),
                        format_table, write_plots, describe)


def load_trained(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[TaskFamily, torch.nn.Module]:
    """The family of a finished run (its config plus ``overrides``) and its best model, in eval mode."""
    from surf.runner import trained_config

    return load_model(run_dir, trained_config(run_dir, overrides or []))


def load_model(run_dir: str | Path, cfg: Config) -> tuple[TaskFamily, torch.nn.Module]:
    """The family of ``cfg`` and the best model of trained run ``run_dir`` (shapes checked), in eval mode."""
    from surf.errors import ConfigError
    from surf.rundir import RunDir

    exp = build_family(cfg)
    model = exp.build_model()
    state = torch.load(RunDir(run_dir).checkpoints / "best.pt", map_location=exp.device, weights_only=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise ConfigError("the trained model's shapes do not fit the overridden config (the paper variant "
                          "depends on d, C and batch size; the compact one does not)") from None
    model.eval()
    return exp, model
