"""Meta-step time on 1 thread vs all cores, side by side in one process, for the quickstart and smaller N.

The compact classifier's meta-step gives the same bits on any thread count (``surf.utils.invariant``), so one
trainer can alternate: even steps on one thread, odd steps on every core, the same trajectory either way. Each
case reports the median seconds per meta-step of each, their ratio, and the count ``threads: 0`` picks for it
(``surf.utils.device.configure_threads``). At the end both halves' parameters are hashed against a replay of the
same steps on one thread: a benchmark that changed the numbers would say so.

Usage:  python benchmarks/bench_threads.py [--steps 60] [--agents 100,50,20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _trainer(agents: int):
    from surf.app.registry import build_family, load_config
    from surf.training.trainer import MetaTrainer

    family = build_family(load_config(REPO / "simulations" / "quickstart.yaml",
                                      [f"num_agents={agents}", "trainer.val_tasks=1"]))
    return family.threads, MetaTrainer(family)


def _digest(trainer) -> str:
    digest = hashlib.sha256()
    for parameter in trainer.model.parameters():
        digest.update(parameter.detach().numpy().tobytes())
    return digest.hexdigest()[:16]


def run_case(agents: int, steps: int) -> dict:
    cores = os.cpu_count() or 1
    auto, trainer = _trainer(agents)
    times: dict[int, list[float]] = {1: [], cores: []}
    for step in range(steps + 2):  # two warm-up steps, one per count
        threads = 1 if step % 2 == 0 else cores
        torch.set_num_threads(threads)
        batch = trainer.train_tasks(step)
        start = time.perf_counter()
        trainer.primal_dual_step(batch)
        if step >= 2:
            times[threads].append(time.perf_counter() - start)
    alternated = _digest(trainer)
    _, replay = _trainer(agents)
    torch.set_num_threads(1)
    for step in range(steps + 2):
        replay.primal_dual_step(replay.train_tasks(step))
    one, many = statistics.median(times[1]), statistics.median(times[cores])
    return {"agents": agents, "auto_threads": auto, "cores": cores, "s_per_step_1_thread": round(one, 4),
            f"s_per_step_{cores}_threads": round(many, 4), "speed_up": round(one / many, 2),
            "same_parameters_as_one_thread_replay": alternated == _digest(replay)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed meta-steps per case (half on each count)")
    parser.add_argument("--agents", default="100,50,20", help="comma-separated N (the quickstart is 100)")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {uptime()}")
    for agents in (int(n) for n in args.agents.split(",")):
        print(json.dumps(run_case(agents, args.steps)), flush=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {uptime()}")


if __name__ == "__main__":
    main()
