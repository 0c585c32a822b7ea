"""The LISTA sparse-coding task family (``surf.families.base.TaskFamily``), trained by the shared ``MetaTrainer``.

A *task* is a batch of ``sparse_coding.batch_size`` LASSO problems drawn from its split's fixed pool, keyed by
``(seed, split, index)`` like the classifier's tasks. Per task the Lagrangian terms are (robust unrolling, TSP 2024):

* objective: ``1/2 mean_b ||x_L - x*||^2`` (supervised by the LASSO optimum, the authors' default) or the
  unsupervised LASSO objective ``mean_b F(x_L)`` (``sparse_coding.loss = objective``);
* slacks ``c_l`` from CI (``constraints.kind = gradient_norm``) or CII (``distance``) values through the shared
  ``descent_constraints`` (difference / ratio / normalized, ``constraints.epsilon``);
  ``constraints.kind = none`` is standard unrolling (values logged only).

``constraints.gradient_on`` and ``optimum_l2`` are decentralized-family settings and are ignored here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from surf.config import Config
from surf.constrained.constraints import descent_constraints
from surf.families.base import TaskTerms
from surf.families.sparse.data import ProblemSource
from surf.families.sparse.measures import ci_values, cii_values, layer_objectives, nmse_db
from surf.models.lista import build_unrolled
from surf.models.perturbation import injection_scales, noise_hook
from surf.problems.lasso import Perturb
from surf.utils.device import configure_threads, resolve_device
from surf.utils.seeding import torch_generator


@dataclass(frozen=True)
class SparseTask:
    """A batch of LASSO problems on one dictionary: signals, their optima and the task's key."""

    key: tuple
    y: torch.Tensor  # (B, n)
    x_star: torch.Tensor  # (B, m)
    dictionary: torch.Tensor  # (n, m)


def gaussian_perturbation(seed: int, key: tuple, stds: list[float]) -> Perturb:
    """``x_l + sigma_l xi_l`` with ``xi_l ~ N(0, I)`` keyed by ``(seed, key, l)``; ``stds[l]`` gives ``sigma_l``."""
    return noise_hook(seed, ("sparse", "perturb", *key), stds)


class SparseCodingFamily:
    """Dictionary, signal pools, LISTA/ALISTA model and per-task Lagrangian terms from one validated Config."""

    shape_keys = ("sparse_coding.variant", "sparse_coding.layers", "sparse_coding.signal_dim", "sparse_coding.atoms")

    def __init__(self, cfg: Config, source: ProblemSource | None = None) -> None:
        self.cfg, self.sc = cfg, cfg.sparse_coding
        self.device = resolve_device(cfg.run_device)
        self.threads = configure_threads(cfg.threads, self.sc.batch_size * self.sc.atoms * self.sc.atoms)
        self.source = source or ProblemSource(cfg)
        self.dictionary = self.source.dictionary.to(self.device)

    @property
    def num_constraints(self) -> int:
        return self.sc.layers

    def describe(self) -> str:
        n, m = self.source.dictionary.shape
        return f"{self.sc.variant}, {self.sc.layers} layers, {self.sc.dictionary} dictionary {n}x{m}"

    def build_model(self) -> nn.Module:
        return build_unrolled(self.sc.variant, self.source.dictionary, self.sc.rho, self.sc.layers).to(self.device)

    def task(self, split: str, index: int, relabel: bool = False) -> SparseTask:
        """Batch ``index`` of ``split``: ``batch_size`` signals drawn from the split's pool (``relabel`` unused)."""
        pool = self.source.pool(split)
        picks = torch.randint(len(pool.y), (self.sc.batch_size,),
                              generator=torch_generator(self.cfg.seed, "sparse", "batch", split, index))
        return SparseTask((split, index), pool.y[picks].to(self.device), pool.x_star[picks].to(self.device),
                          self.dictionary)

    def constraint_values(self, trajectory: list[torch.Tensor], task: SparseTask) -> torch.Tensor:
        """Per-layer CI or CII values a_0..a_L (batch means of per-signal norms)."""
        if self.cfg.constraints.kind == "distance":
            return cii_values(trajectory, task.x_star)
        return ci_values(trajectory, task.y, task.dictionary, self.sc.rho, self.source.eta, self.sc.ci_measure)

    def injection(self, task: SparseTask) -> Perturb | None:
        """Training-time noise on layer outputs (``sparse_coding.noise_injection``), or None."""
        if self.sc.noise_injection <= 0:
            return None
        stds = injection_scales(self.sc.noise_injection, self.sc.noise_decay, self.sc.layers)
        return gaussian_perturbation(self.cfg.seed, ("inject", *task.key), stds)

    def task_terms(self, model: nn.Module, task: SparseTask) -> TaskTerms:
        """Unroll on the task's signals: loss at x_L, descent slacks, per-layer NMSE (dB) and objective."""
        trajectory = model(task.y, self.injection(task) if model.training else None)
        if self.sc.loss == "objective":
            loss = layer_objectives(trajectory[-1:], task.y, task.dictionary, self.sc.rho).mean()
        else:
            loss = 0.5 * (trajectory[-1] - task.x_star).pow(2).sum(-1).mean()
        ccfg = self.cfg.constraints
        if ccfg.kind == "none":  # standard unrolling: log the CI values only
            with torch.no_grad():
                values = self.constraint_values(trajectory, task)
        else:
            values = self.constraint_values(trajectory, task)
        slacks = descent_constraints(values, ccfg.form, ccfg.epsilon)
        with torch.no_grad():
            metrics = {"nmse_db": nmse_db(trajectory, task.x_star),
                       "objective": layer_objectives(trajectory, task.y, task.dictionary, self.sc.rho).mean(-1)}
        return TaskTerms(loss, slacks, values.detach(), metrics)
