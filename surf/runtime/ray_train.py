"""Data-parallel meta-training on Ray Train (``trainer.workers > 1``; see docs/distributed.md).

W workers run the shared loop of ``surf.training.trainer.MetaTrainer``; each draws its own ``tasks_per_step`` tasks
of a step (global indices ``(step * W + r) * P + j``). The gradients of the per-worker Lagrangians (task means) are
averaged with one all-reduce, so with equal shares the update equals one process's update on all W*P tasks (eq. 4).
The constraint slacks are all-reduced as well, so every worker applies the identical dual step (eq. 5) and lambda
never diverges. Validation tasks are split across workers and their sums all-reduced. Backend gloo on CPU, nccl on
GPU.

Rank 0 writes the run directory exactly as a single process does (metrics.jsonl, checkpoints/last.pt and best.pt);
every checkpoint is also reported to Ray Train (model, Adam, lambda, step; the task sampler and all randomness are
keyed by the step, so the step is their whole state). With ``trainer.max_failures`` restarts, a dead worker makes
Ray restart the group, which resumes from the last reported checkpoint. ``ray`` is imported only here."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from surf.config import Config
from surf.families.base import TaskFamily
from surf.runtime.ray_cluster import start_ray
from surf.training.rundir import RunDir
from surf.training.trainer import CHECKPOINT_KEYS, MetaTrainer
from surf.utils.errors import ConfigError, TrainingError
from surf.utils.io import load_checkpoint

STATE_FILE = "state.pt"  # the trainer state inside a Ray Train checkpoint
FAULT_MARKER = "injected_fault"  # run-directory file: the injected worker failure has happened once


class DistributedMetaTrainer(MetaTrainer):
    """The shared meta-trainer as worker ``rank`` of ``world_size``: all-reduces over ``torch.distributed``."""

    def __init__(self, exp: TaskFamily, rank: int, world_size: int, run: RunDir, fail_at_step: int | None = None):
        super().__init__(exp, log=run.append_metrics if rank == 0 else None)
        self.rank, self.world_size, self.run = rank, world_size, run
        self.fail_at_step = fail_at_step
        self.restored_step = 0
        self.reduce_seconds = 0.0  # time in all-reduces (within step_seconds)

    def _all_reduce(self, values: torch.Tensor) -> None:
        start = time.perf_counter()
        dist.all_reduce(values)
        self.reduce_seconds += time.perf_counter() - start

    def reduce_gradients(self) -> None:
        """Average the meta-gradient over workers (one all-reduce of all gradients, flattened)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self._all_reduce(flat)
        flat /= self.world_size
        for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
            p.grad.copy_(part.view_as(p.grad))

    def reduce_means(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        self._all_reduce(values)
        return values / self.world_size

    def train_tasks(self, step: int) -> list:
        """The shared task draw, plus the fault injection of the recovery test (last rank dies once at a step)."""
        marker = self.run.path / FAULT_MARKER
        if step == self.fail_at_step and self.rank == self.world_size - 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        return super().train_tasks(step)

    def checkpoint(self, checkpoint_dir: Path | None) -> None:
        """Rank 0 writes the run directory's checkpoints; all ranks report to Ray Train (a collective)."""
        import ray.train

        divergence = self.divergence()
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:
                super().checkpoint(checkpoint_dir)
                torch.save(self.state(), Path(tmp) / STATE_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            metrics = {"step": self.step, "restored_step": self.restored_step, "step_seconds": self.step_seconds,
                       "reduce_seconds": self.reduce_seconds, **divergence}
            ray.train.report(metrics, checkpoint=checkpoint)

    def divergence(self) -> dict[str, float]:
        """Largest difference of lambda and of the parameters between any worker and rank 0 (0.0 when in sync)."""
        result = {}
        params = torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])
        named = {"lambda": self.duals.value, "params": params}
        for name, value in named.items():
            value = value.to(self.exp.device, torch.float64)
            reference = value.clone()
            dist.broadcast(reference, src=0)
            gap = (value - reference).abs().max().reshape(1)
            dist.all_reduce(gap, op=dist.ReduceOp.MAX)
            result[f"{name}_divergence"] = gap.item()
        return result

    def restore(self) -> None:
        """Continue from the newest checkpoint: Ray Train's last one (after a worker failure) or the run directory's
        ``last.pt`` (``--resume``; also newer than Ray's when a worker died before Ray registered the last report,
        since rank 0 writes it first). A fresh run instead takes rank 0's initial parameters."""
        import ray.train

        candidates = []
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                candidates.append(load_checkpoint(Path(folder) / STATE_FILE, "cpu", CHECKPOINT_KEYS))
        if (self.run.checkpoints / "last.pt").exists():
            candidates.append(load_checkpoint(self.run.checkpoints / "last.pt", "cpu", CHECKPOINT_KEYS))
        if candidates:
            self.load_state(max(candidates, key=lambda state: state["step"]))
            if self.rank == 0:
                self.run.truncate_metrics(self.completed_step())
        else:
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, src=0)
        self.restored_step = self.step


def _worker_loop(config: dict) -> None:
    """One Ray Train worker: rebuild the task family, restore, run the shared training loop."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    cfg: Config = config["cfg"]
    if config["use_gpu"]:
        torch.cuda.set_device(ray.train.torch.get_device())
    exp = config["family"](replace(cfg, threads=cfg.threads or 1))  # a worker holds one CPU (ScalingConfig default)
    run = RunDir(config["run_path"])
    trainer = DistributedMetaTrainer(exp, context.get_world_rank(), context.get_world_size(), run,
                                     config["fail_at_step"])
    trainer.restore()
    trainer.train(run.checkpoints if trainer.rank == 0 else None, progress=False)


def check_scaling(workers: int, device: torch.device) -> None:
    """Fail early, in one line, when Ray Train is missing or there are fewer GPUs than workers."""
    try:
        import ray.train.torch  # noqa: F401
    except ImportError:
        raise ConfigError(f"trainer.workers={workers} needs Ray Train: pip install 'ray[train]==2.55.*' "
                          "(or set trainer.workers=1)") from None
    if device.type == "cuda" and torch.cuda.device_count() < workers:
        raise ConfigError(f"trainer.workers={workers} needs {workers} GPUs but {torch.cuda.device_count()} are "
                          "visible; lower trainer.workers or set trainer.device=cpu")


def train_with_ray(trainer: MetaTrainer, run: RunDir, fail_at_step: int | None = None) -> dict:
    """Meta-train ``trainer.cfg`` on ``trainer.workers`` Ray Train workers, writing ``run``.

    On return ``trainer`` holds what ``trainer.train`` leaves: the last step, Adam and lambda, and the best model
    loaded. A run directory holding ``checkpoints/last.pt`` (``--resume``) continues from it. ``fail_at_step`` kills
    the last worker once at that step (to exercise recovery). Returns the last metrics reported to Ray: step,
    restored_step (where the last worker group started), step_seconds (rank 0's time in task draws and meta-steps, since
    then), reduce_seconds (rank 0's part of it in all-reduces, waiting for the other workers included),
    lambda_divergence and params_divergence (0.0 when in sync; anything else raises TrainingError).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg = trainer.cfg
    workers, use_gpu = cfg.trainer.workers, trainer.exp.device.type == "cuda"
    check_scaling(workers, trainer.exp.device)
    start_ray(workers, use_gpu)
    job = TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": cfg, "family": type(trainer.exp), "run_path": str(run.path.resolve()),
                           "use_gpu": use_gpu, "fail_at_step": fail_at_step},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=time.strftime("meta_train_%Y%m%d_%H%M%S"),
            storage_path=str((run.path / "ray").resolve()),
            failure_config=FailureConfig(max_failures=cfg.trainer.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        result = job.fit()
    except TrainingFailedError as exc:
        raise TrainingError(f"distributed meta-training failed: {_first_line(exc)}") from None
    metrics = dict(result.metrics or {})
    if metrics.get("lambda_divergence", 0.0) or metrics.get("params_divergence", 0.0):
        raise TrainingError(f"workers ended with different lambda or parameters ({metrics}); please report this bug")
    trainer.load(run.checkpoints / "last.pt")
    if trainer.best_state is not None:
        trainer.model.load_state_dict(trainer.best_state)
    return metrics


def _first_line(exc: BaseException) -> str:
    """The root cause of a Ray Train failure in one line."""
    failures = getattr(exc, "worker_failures", None)
    cause = next(iter(failures.values())) if failures else exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__
