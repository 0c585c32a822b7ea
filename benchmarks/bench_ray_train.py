"""Meta-training throughput (tasks per second): one process vs W Ray Train workers, measured in one invocation.

Both cases train on the same tasks: one process drawing W tasks per step, and W workers drawing one task each
(``trainer.tasks_per_step=1``, ``trainer.workers=W``), on the quickstart problem. Throughput counts the time spent
drawing tasks and in meta-steps (unroll, Lagrangian backward, gradient all-reduce, Adam, dual step), i.e. the
trainer's ``step_seconds`` (rank 0's for Ray, with its all-reduce time ``reduce_seconds`` reported separately:
the all-reduces include waiting for the slower worker); end-to-end wall time (Ray start, worker start, validation
at steps 0 and S, checkpoints) is reported separately.

The single process runs twice: on the config's threads (``threads: 0`` = both cores here) and on one thread (the
issue's reference when it was filed). ``one_task_one_thread`` is one worker's share computed alone in a process of
its own; W times its rate is what W workers could reach without any all-reduce or Ray cost, and
``parallel_efficiency`` is how much of that they reach.

Usage:  python benchmarks/bench_ray_train.py [--steps 40] [--workers 2] [--config simulations/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from surf import config as config_mod  # noqa: E402
from surf.families.classifier.family import ClassifierFamily  # noqa: E402
from surf.training.rundir import RunDir  # noqa: E402
from surf.training.trainer import MetaTrainer  # noqa: E402


def load(config: str, steps: int, workers: int, tasks_per_step: int, extra: tuple[str, ...] = ()
         ) -> config_mod.Config:
    overrides = [f"trainer.steps={steps}", f"trainer.val_every={steps}", f"trainer.checkpoint_every={steps}",
                 f"trainer.workers={workers}", f"trainer.tasks_per_step={tasks_per_step}", "device=cpu", *extra]
    return config_mod.load(config, overrides)


def single_process(config: str, steps: int, tasks_per_step: int, folder: Path, threads: int | None = None) -> dict:
    """One process drawing ``tasks_per_step`` tasks per step, batched, on the config's threads or ``threads``."""
    cfg = load(config, steps, 1, tasks_per_step, () if threads is None else (f"threads={threads}",))
    start = time.perf_counter()
    run = RunDir(folder / f"single_{tasks_per_step}_{threads}")
    run.prepare(cfg, resume=False)
    trainer = MetaTrainer(ClassifierFamily(cfg), log=run.append_metrics)
    trainer.train(run.checkpoints, progress=False)
    return {"step_seconds": trainer.step_seconds, "wall_seconds": time.perf_counter() - start}


def ray_workers(config: str, steps: int, workers: int, folder: Path) -> dict:
    from surf.runtime.ray_cluster import start_ray
    from surf.runtime.ray_train import train_with_ray

    cfg = load(config, steps, workers, 1)
    start = time.perf_counter()
    start_ray(workers, use_gpu=False)
    run = RunDir(folder / "ray")
    run.prepare(cfg, resume=False)
    report = train_with_ray(MetaTrainer(ClassifierFamily(cfg)), run)
    return {"step_seconds": report["step_seconds"], "reduce_seconds": report["reduce_seconds"],
            "wall_seconds": time.perf_counter() - start,
            "lambda_divergence": report["lambda_divergence"], "params_divergence": report["params_divergence"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "simulations" / "quickstart.yaml"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        one = single_process(args.config, args.steps, args.workers, Path(tmp))
        one_thread = single_process(args.config, args.steps, args.workers, Path(tmp), threads=1)
        worker_alone = single_process(args.config, args.steps, 1, Path(tmp), threads=1)  # one worker's share
        many = ray_workers(args.config, args.steps, args.workers, Path(tmp))
    tasks = args.steps * args.workers
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {__import__('torch').__version__}",
        "config": args.config, "steps": args.steps, "global_tasks_per_step": args.workers,
        "uptime_before": uptime,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "single": {**one, "tasks_per_s": tasks / one["step_seconds"]},
        "single_one_thread": {**one_thread, "tasks_per_s": tasks / one_thread["step_seconds"]},
        f"ray_{args.workers}_workers": {**many, "tasks_per_s": tasks / many["step_seconds"]},
        "speedup": one["step_seconds"] / many["step_seconds"],
        "speedup_vs_one_thread": one_thread["step_seconds"] / many["step_seconds"],
        # what W workers could reach at best: W processes each computing one worker's share alone, no all-reduce
        "one_task_one_thread": {**worker_alone, "tasks_per_s": args.steps / worker_alone["step_seconds"]},
        "parallel_efficiency": (tasks / many["step_seconds"]) / (tasks / worker_alone["step_seconds"]),
        "wall_speedup": one["wall_seconds"] / many["wall_seconds"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
