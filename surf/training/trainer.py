"""Primal-dual meta-training over tasks (paper Algorithm 1).

The loop is family-agnostic (``surf.families.base.TaskFamily``): the decentralized classifier and LISTA share it.
Per meta-step: draw ``tasks_per_step`` meta-train tasks, unroll, form the Lagrangian

    L(Theta, lambda) = mean_tasks[ f(W_L; held-out) ] + sum_l lambda_l * mean_tasks[ c_l ]        (eq. 4)

take one Adam step on Theta, then one projected dual step ``lambda <- [lambda + eta c]_+`` (eq. 5); both come from
``surf.constrained.formulation.DescentFormulation``. With ``constraints.kind = none`` this is standard
(unconstrained) unrolling. The model with the lowest validation loss (or, ``trainer.select_by=accuracy``, the
highest validation accuracy) is kept; the untrained model at step 0 takes part. ``trainer.lr_schedule`` and
``trainer.ema`` (a moving average of the parameters, validated and kept instead of the iterate) are in
``surf.training.averaging``. A data-parallel runtime
(``surf.runtime.ray_train``) subclasses the trainer and overrides only
``reduce_gradients`` / ``reduce_means`` (all-reduce), ``rank`` / ``world_size`` (which tasks a worker draws) and
``checkpoint`` (where a checkpoint goes), so every runtime shares this loop.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from surf.constrained.duals import DualVariables
from surf.constrained.formulation import DescentFormulation
from surf.families.base import TaskFamily, TaskTerms
from surf.training.averaging import ParameterAverage, cosine_lr, snapshot
from surf.training.pretrain import pretrain
from surf.utils.errors import ConfigError, TrainingError
from surf.utils.faults import pause_point
from surf.utils.io import atomic_save, load_checkpoint
from surf.utils.replicas import check_fits, tensor_bytes
from surf.utils.seeding import derive_seed


def _scalars(validation: dict) -> dict[str, float]:
    """The scalar entries of a validation row (``val_loss``, ``val_accuracy``, ...), without per-layer lists."""
    return {key: value for key, value in validation.items() if isinstance(value, float | int)}


def _layer_sums(terms: list[TaskTerms]) -> dict[str, torch.Tensor]:
    """Per-layer measured values and the family's per-layer metrics, summed over tasks (for metrics.jsonl)."""
    sums = {"values": torch.stack([t.tasks * t.values for t in terms]).sum(0)}
    for name in terms[0].layer_metrics:
        sums[f"layer_{name}"] = torch.stack([t.tasks * t.layer_metrics[name] for t in terms]).sum(0)
    return sums


CHECKPOINT_KEYS = ("model", "optimizer", "duals", "step", "best_val", "best_state")


def _task_mean(terms: list[TaskTerms], field: str) -> torch.Tensor:
    """The mean over tasks of a per-task term (a unit of T tasks side by side counts T times)."""
    total = sum(t.tasks for t in terms)
    return torch.stack([t.tasks * getattr(t, field) for t in terms]).sum(0) / total


class MetaTrainer:
    """Owns the model, Adam, the duals and the step counter; checkpoints everything needed to resume."""

    def __init__(self, exp: TaskFamily, log: Callable[[dict], None] | None = None) -> None:
        self.exp, self.cfg = exp, exp.cfg
        per = self.cfg.trainer.tasks_per_step
        if per > 1:  # a step holds them all at once: 2**63 - 1 of them were drawn until the memory ran out
            check_fits(per * tensor_bytes(exp.task("train", 0)), f"trainer.tasks_per_step={per} tasks")
        with torch.random.fork_rng(devices=[]):  # initial parameters keyed by the seed, as every other draw
            torch.manual_seed(derive_seed(self.cfg.seed, "model_init"))
            self.model = exp.build_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.trainer.lr)
        self.formulation = DescentFormulation(self.cfg.constraints, exp.num_constraints)
        self.step = 0
        self.step_seconds = 0.0  # time spent drawing tasks and in meta-steps (this process; for throughput)
        self.best_val = math.inf  # the selection criterion (trainer.select_by), lower is better
        self.best_state: dict | None = None
        self.average: ParameterAverage | None = None  # trainer.ema: created at step 0 (after the warm start)
        self.best_step: int | None = None
        self.best_validation: dict[str, float] = {}  # the selected model's validation metrics
        self.start_validation: dict[str, float] = {}  # the untrained (e.g. warm-started) model's, at step 0
        self.log = log or (lambda row: None)
        self.interrupts = Interrupts()  # installed while train() runs

    @property
    def duals(self) -> DualVariables:
        return self.formulation.duals

    # -- the points a data-parallel runtime overrides -----------------------------------------------------------
    rank, world_size = 0, 1  # this worker and the number of workers; each draws its own share of a step's tasks

    def reduce_gradients(self) -> None:
        """Average gradients across workers (no-op in a single process)."""

    def reduce_means(self, values: torch.Tensor) -> torch.Tensor:
        """Average per-worker means across workers (identity here): constraint slacks, so that every worker applies
        the same dual step, and the logged statistics."""
        return values

    def checkpoint(self, checkpoint_dir: Path | None) -> None:
        """Write the resumable state (``last.pt`` and ``best.pt``) to ``checkpoint_dir``."""
        if checkpoint_dir:
            self.save(checkpoint_dir / "last.pt")

    # -- training -----------------------------------------------------------------------------------------------
    def train_tasks(self, step: int) -> list:
        """This worker's meta-train tasks of ``step``, keyed by step (so resuming draws the same ones).

        With W workers of P tasks each, worker r draws global indices ``(step * W + r) * P + j``: W workers x P tasks
        see exactly the tasks of one worker x W*P tasks.
        """
        per = self.cfg.trainer.tasks_per_step
        first = (step * self.world_size + self.rank) * per
        relabel = self.cfg.data.relabel_train
        return [self.exp.task("train", first + j, relabel=relabel) for j in range(per)]

    def _reduce(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``reduce_means`` of several tensors at once (one all-reduce), returned in float64 on the CPU."""
        flat = torch.cat([v.detach().reshape(-1).to(self.exp.device, torch.float64) for v in stats.values()])
        flat = self.reduce_means(flat).cpu()
        sizes = [v.numel() for v in stats.values()]
        return {k: part.reshape(v.shape) for (k, v), part in zip(stats.items(), flat.split(sizes), strict=True)}

    def units(self, tasks: list) -> list:
        """What one unroll takes: the family's batches of tasks side by side (``batch_tasks``) if it has them,
        otherwise one task at a time."""
        batch_tasks = getattr(self.exp, "batch_tasks", None)
        return batch_tasks(tasks) if batch_tasks is not None else tasks

    def _divergence_fix(self, lower: str) -> str:
        """What to change after non-finite values: the training's step sizes once it has moved the model; before the
        first meta-step only the problem or the initial model can be at fault."""
        if self.step == 0:
            return ("before any meta-step, so the tasks or the initial model overflow, not the training: lower the "
                    "scales of the problem or of its start (e.g. model.w0_std, noise levels, sizes) or the model's "
                    "initial steps, and rerun into a new --out")
        return (f"rerun into a new --out with a lower {lower} (--resume continues only the same config, which fails "
                "the same way)")

    def primal_dual_step(self, tasks: list) -> dict:
        """One primal Adam step on the Lagrangian and one projected dual ascent step (Algorithm 1)."""
        self.model.train()
        torch.manual_seed(derive_seed(self.cfg.seed, "dropout", self.step))  # paper variant's Dropout
        terms = [self.exp.task_terms(self.model, unit) for unit in self.units(tasks)]
        objective, slacks = _task_mean(terms, "objective"), _task_mean(terms, "slacks")
        lagrangian = self.formulation.lagrangian(objective, slacks)  # eq. 4
        if not torch.isfinite(lagrangian):
            raise TrainingError(f"non-finite Lagrangian at step {self.step} (held-out loss {objective.item():.3g}); "
                                + self._divergence_fix("trainer.lr, trainer.grad_clip=1.0 or a smaller model.w0_std"))
        self.optimizer.zero_grad(set_to_none=True)
        lagrangian.backward()
        self.reduce_gradients()
        tcfg = self.cfg.trainer
        if tcfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip)
        if tcfg.lr_schedule == "cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(tcfg.lr, self.step, tcfg.steps)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)
        layers = {name: value / len(tasks) for name, value in _layer_sums(terms).items()}
        means = self._reduce({"lagrangian": lagrangian, "loss": objective, "slacks": slacks, **layers})
        self.formulation.dual_step(means["slacks"])  # eq. 5
        self.step += 1
        row = {"step": self.step, **{name: value.tolist() for name, value in means.items()}}
        return {**row, "lambda": self.duals.value.tolist()}

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean held-out loss and accuracy at W_L over the fixed validation tasks (split across workers)."""
        self.model.eval()
        relabel = self.cfg.data.relabel_train
        tasks = [self.exp.task("val", i, relabel=relabel) for i in range(self.rank, self.cfg.trainer.val_tasks,
                                                                          self.world_size)]
        terms = [self.exp.task_terms(self.model, unit) for unit in self.units(tasks)]
        loss = torch.stack([t.tasks * t.objective.detach() for t in terms]).sum()
        sums = self._reduce({"count": torch.tensor(float(len(tasks))), "loss": loss, **_layer_sums(terms)})
        count = sums.pop("count")  # sums of per-worker sums / W; dividing by the count / W gives the global mean
        layers = {key: (value / count).tolist() for key, value in sums.items()}
        loss = layers.pop("loss")
        if not math.isfinite(loss):
            raise TrainingError(f"non-finite validation loss at step {self.step}; "
                                + self._divergence_fix("trainer.lr"))
        finals = {f"val_{key[len('layer_'):]}": value[-1] for key, value in layers.items() if key.startswith("layer_")}
        return {"val_loss": loss, **finals, **{f"val_{key}": value for key, value in layers.items()}}

    def train(self, checkpoint_dir: Path | None = None, progress: bool = True) -> dict:
        """Run meta-steps up to ``trainer.steps``, validating and checkpointing; returns the last validation.

        A step is a unit: the primal-dual update, its validation when one is due and its ``metrics.jsonl`` row. A
        checkpoint is written only between units, so it never holds a step whose validation was skipped or a
        half-applied update. SIGINT / SIGTERM only set a flag (:class:`Interrupts`); the loop checks it after every
        unit, writes ``last.pt`` and raises ``KeyboardInterrupt``. A killed process (SIGKILL) resumes from the last
        checkpoint, and the rows written after it are dropped on resume and recomputed identically.
        """
        tcfg = self.cfg.trainer
        last_val: dict = {}
        bar = tqdm(total=tcfg.steps, initial=self.step, desc="meta-training", disable=not progress, unit="step")
        with self.interrupts as interrupts:
            if self.completed_step() < 0:  # a fresh run: pretrain (if any), validate the untrained model at step 0
                self.pretrain()
                if self.cfg.trainer.ema is not None:
                    self.average = ParameterAverage(self.model, self.cfg.trainer.ema)
                last_val = self._validate_and_select()
                self.start_validation = _scalars(last_val)
                self.log({"step": 0, **last_val})
                self.checkpoint(checkpoint_dir)  # step 0 is a unit too: with trainer.steps=0 it is the trained model
            while self.step < tcfg.steps and not interrupts.requested:
                start = time.perf_counter()
                row = self.primal_dual_step(self.train_tasks(self.step))
                self.step_seconds += time.perf_counter() - start
                self._pause("step")
                if self.step % tcfg.val_every == 0 or self.step == tcfg.steps:
                    last_val = self._validate_and_select()
                    row.update(last_val)
                self.log(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{self.best_val:.3f}")
                if self.step % tcfg.checkpoint_every == 0 or self.step == tcfg.steps:
                    self.checkpoint(checkpoint_dir)
            if interrupts.requested:
                self.checkpoint(checkpoint_dir)
                raise KeyboardInterrupt
        bar.close()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return last_val

    def completed_step(self) -> int:
        """The last step whose unit (update, validation, log row) this state holds; -1 before the step-0 validation
        (a fresh run, or a checkpoint written before it, such as the warm start's)."""
        return self.step if self.best_state is not None else -1

    def _pause(self, point: str) -> None:
        pause_point(point, self.step, stop=lambda: self.interrupts.requested is not None)

    def pretrain(self) -> None:
        """The family's optional pretraining stage (``pretraining(model)``, e.g. a flow's density fit), logged once."""
        stage = getattr(self.exp, "pretraining", lambda model: None)(self.model)
        if stage is not None:
            losses = pretrain(stage)
            self.log({"step": 0, "pretrain_steps": len(losses), "pretrain_loss": losses[-1] if losses else None})

    def _validate_and_select(self) -> dict:
        """Validate and keep the model if it is the best so far by ``trainer.select_by``: the lowest validation loss
        or the highest final validation accuracy. Step 0 (the untrained model) takes part, so the selected model is
        never worse by that criterion than the one training started from, on these validation tasks (under the
        training scenario, if any)."""
        self._pause("validate")
        raw = None
        if self.average is not None:  # validate the average; the iterate goes on training
            raw = snapshot(self.model.state_dict())
            self.model.load_state_dict(self.average.state_dict())
        result = self.validate()
        criterion = -result["val_accuracy"] if self.cfg.trainer.select_by == "accuracy" else result["val_loss"]
        if criterion < self.best_val:
            self.best_val, self.best_step, self.best_validation = criterion, self.step, _scalars(result)
            self.best_state = snapshot(self.model.state_dict())
        if raw is not None:
            self.model.load_state_dict(raw)
        return result

    # -- checkpoints --------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "duals": self.duals.state_dict(),
            "step": self.step,
            "best_val": self.best_val,
            "best_state": self.best_state,
            "best_step": self.best_step,
            "best_validation": self.best_validation,
            "start_validation": self.start_validation,
            "average": self.average.state_dict() if self.average is not None else None,
        }

    def save(self, path: Path) -> None:
        """Atomic checkpoint writes (temp file + rename: a killed process leaves the previous checkpoint intact).
        ``best.pt`` first, the resumable state last: a process killed between the two resumes from the previous
        state and rewrites both, while a state written first would resume past the step whose best.pt was lost."""
        self.save_best(path.parent)
        atomic_save(self.state(), path, before_rename=lambda: self._pause("checkpoint"))

    def save_best(self, checkpoint_dir: Path) -> None:
        """``best.pt``: the selected model so far (nothing before the first validation)."""
        if self.best_state is not None:
            atomic_save({"model": self.best_state, "best_val": self.best_val, "step": self.step},
                        checkpoint_dir / "best.pt")

    def load(self, path: Path) -> None:
        """Restore ``last.pt``; one that does not fit this run's model (another run's file) is a one-line error."""
        state = load_checkpoint(path, self.exp.device, CHECKPOINT_KEYS)
        try:
            self.load_state(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"checkpoint {path} does not fit this run's config ({reason}); delete it and rerun "
                              "with --resume (the run starts over)") from None

    def load_state(self, state: dict) -> None:
        """Restore what ``state()`` returned."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.duals.load_state_dict(state["duals"])
        self.step, self.best_val, self.best_state = state["step"], state["best_val"], state["best_state"]
        self.best_step = state.get("best_step")  # absent from checkpoints written before model-selection records
        self.best_validation = state.get("best_validation", {})
        self.start_validation = state.get("start_validation", {})
        self.average = None  # a checkpoint from before trainer.ema was set restarts the average at its iterate
        if self.cfg.trainer.ema is not None and self.completed_step() >= 0:
            self.average = ParameterAverage(self.model, self.cfg.trainer.ema)
            if state.get("average") is not None:
                self.average.load_state_dict(state["average"])


class Interrupts:
    """Context manager: SIGINT and SIGTERM set ``requested`` (the training loop stops at its next safe point); a
    second signal raises ``KeyboardInterrupt`` at once, without saving (the previous checkpoint stays valid).
    Outside the main thread (a Ray Train worker) signals are left alone."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self) -> Interrupts:
        self.requested = None
        try:
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        except ValueError:  # not in the main thread
            self.previous = {}
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
