"""Flower runtime: wall time per communication round vs a bare Flower round, scale, and peak memory.

Everything in one invocation runs in ONE Flower simulation (one Ray start), so the SURF rounds and the bare rounds
(empty messages to every node, empty replies) share the machine state and are reported side by side. A SURF round
forwards one packed Array per (source node, destination node) and carries all --tasks meta-test tasks. Run alone on
the machine (nothing else running), from the repository root, on a trained quickstart run:

    PYTHONPATH=. python benchmarks/bench_flower.py --run-dir runs/quickstart --agents 100 --per-node 10 1 \
        --out bench_flower_100.json
    PYTHONPATH=. python benchmarks/bench_flower.py --run-dir runs/quickstart --agents 1000 --per-node 10 \
        --out bench_flower_1000.json
    PYTHONPATH=. python benchmarks/bench_flower.py --run-dir runs/quickstart --agents 10000 --per-node 10 \
        --bare-rounds 5 --out bench_flower_10000.json

Goals (issue 14): with 10 agents per node a SURF round costs at most 1.5x a bare round at 100 agents and 2x at 1,000;
10,000 agents complete the quickstart model. ``vs_bare`` and ``goal_met`` report them. Peak memory is sampled every
0.2 s as the summed resident memory (VmRSS) of this process and all its descendants (Ray's GCS, raylet and the
ClientApp actors) and reported with the driver's own peak (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import yaml

GOALS = {(100, 10): 1.5, (1000, 10): 2.0}  # (agents, agents per node) -> most a SURF round may cost vs bare


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(children.get(current, []))
    return out


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak summed RSS of the process tree."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib, self.stop = 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in _descendants(os.getpid())))
            self.stop.wait(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a trained run (e.g. runs/quickstart)")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--per-node", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--tasks", type=int, default=1, help="meta-test tasks batched in every message")
    parser.add_argument("--bare-rounds", type=int, default=20)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--out", help="write the measurements as JSON here")
    args = parser.parse_args()

    from surf.app.registry import load_trained
    from surf.config import to_dict
    from surf.runtime.flower.deploy import check_decentralizable
    from surf.runtime.flower.relay import Job
    from surf.runtime.flower.simulation import run_jobs

    exp, model = load_trained(args.run_dir, [f"num_agents={args.agents}"])
    check_decentralizable(exp)
    cfg = exp.cfg
    keys = [("test", i, False) for i in range(args.tasks)]
    shift = exp.shift_for(exp.task(*keys[0][:2])).cpu()  # sparse: a dense 10,000^2 S would take 400 MB
    theta = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config_yaml = yaml.safe_dump(to_dict(cfg))
    jobs = []
    for per_node in args.per_node:
        nodes = -(-args.agents // per_node)
        jobs.append(Job(f"bare-{per_node}", "", shift, "echo", [], nodes, steps=args.bare_rounds))
        jobs.append(Job(f"surf-{per_node}", config_yaml, shift, "surf", keys, nodes, theta=theta,
                        steps=cfg.model.layers, hops=cfg.model.hops))
    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    results = run_jobs(jobs, num_actors=args.actors)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    rows = []
    for job, result in zip(jobs, results, strict=True):
        ledger = result.ledger.summary()
        rounds = [r for r in result.ledger.rounds if r["kind"] in ("hop", "echo")]
        # the first bare round also waits for the Ray actors to start: leave it out
        timed = rounds[1:] if job.method == "echo" else rounds
        per_round = sum(r["seconds"] for r in timed) / len(timed)
        rows.append({"job": job.name, "nodes": job.nodes, "rounds": len(timed),
                     "seconds_per_round": per_round, "job_seconds": result.seconds,
                     "messages": ledger["messages"], "bytes": ledger["bytes"],
                     "final_accuracy": None if result.accuracy is None else result.accuracy[-1].mean().item()})
    for per_node in args.per_node:
        bare = next(r for r in rows if r["job"] == f"bare-{per_node}")
        surf = next(r for r in rows if r["job"] == f"surf-{per_node}")
        surf["vs_bare"] = surf["seconds_per_round"] / bare["seconds_per_round"]
        goal = GOALS.get((args.agents, per_node))
        surf["goal"], surf["goal_met"] = goal, None if goal is None else surf["vs_bare"] <= goal
        surf["completed"] = surf["final_accuracy"] is not None
    report = {"agents": args.agents, "tasks": args.tasks, "actors": args.actors, "wall_seconds": wall,
              "peak_rss_tree_gib": sampler.peak_kib / 2**20,
              "peak_rss_driver_gib": _rss_kib(os.getpid(), "VmHWM") / 2**20,
              "load_average": os.getloadavg(), "rows": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
