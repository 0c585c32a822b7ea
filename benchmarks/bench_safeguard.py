"""Cost of the run-time safeguard (``model.safeguard: loss``): the learned model's meta-test pass with and without
it, side by side in one invocation.

For a trained run, times ``evaluate_unrolled`` (the unrolled model on ``eval.test_tasks`` meta-test tasks, its
per-layer measures included; no baselines) with the safeguard on and off, alternating, clean and with ``--drops``
agents dropped per layer (stale), and reports the median seconds, their ratio and how often the safeguard fell back,
with ``uptime`` load before and after. The safeguard adds two local-loss evaluations per agent and layer and no
communication; meta-training never runs it.

Usage:  python benchmarks/bench_safeguard.py RUN_DIR [--rounds 5] [--drops 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from surf.app.registry import load_trained  # noqa: E402
from surf.evaluation.classifier import evaluate_unrolled  # noqa: E402
from surf.scenarios.scenario import dropped_agents_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drops", type=int, default=10)
    args = parser.parse_args()
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    torch.set_num_threads(1)
    family, model = load_trained(args.run_dir, ["model.safeguard=loss"])
    tasks = [family.task("test", i) for i in range(family.cfg.eval.test_tasks)]
    print(f"{len(tasks)} meta-test tasks, {family.cfg.num_agents} agents, {family.cfg.model.layers} layers, 1 thread")
    print(f"{'condition':<12} {'unguarded s':>12} {'guarded s':>10} {'ratio':>6} {'fallbacks':>9}")
    for n_async in (0, args.drops):
        drops = dropped_agents_scenario(n_async, "stale") if n_async else None
        times: dict[str, list[float]] = {"none": [], "loss": []}
        fallback = None
        for _ in range(args.rounds):
            for mode in times:
                model.cfg.safeguard = mode
                start = time.perf_counter()
                result = evaluate_unrolled(family, model, tasks, drops)
                times[mode].append(time.perf_counter() - start)
                fallback = result["safeguard_fallback_fraction"] if mode == "loss" else fallback
        plain, guarded = (statistics.median(times[m]) for m in ("none", "loss"))
        label = "clean" if not n_async else f"{n_async} dropped"
        print(f"{label:<12} {plain:>12.2f} {guarded:>10.2f} {guarded / plain:>6.2f} {100 * fallback:>8.1f}%")
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
