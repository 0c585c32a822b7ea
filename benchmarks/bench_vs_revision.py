"""Quickstart meta-step (or evaluation) time of this tree against another git revision, side by side in one
invocation.

The other revision is checked out into a temporary git worktree; each round runs one subprocess per tree
(alternating, so drifting machine load hits both alike). ``--measure step`` builds the quickstart family, draws the
meta-train tasks of the first steps and times ``MetaTrainer.primal_dual_step``; ``--measure eval`` times ``surf run
simulations/quickstart.yaml -o trainer.steps=0`` end to end: the meta-test evaluation of the (untrained) model,
baseline tuning on the validation tasks, the baselines and DGD at 200 rounds on 30 tasks, tables and plots (the
evaluation's cost does not depend on the parameters). Each tree reads its own ``simulations/quickstart.yaml``, or
both read ``--config FILE`` (e.g. an earlier quickstart: ``git show 4c20cd5:simulations/quickstart.yaml``).
Reported: the median seconds of each tree and their ratio, with ``uptime`` load before and after.

Usage:  python benchmarks/bench_vs_revision.py --base 4c20cd5 [--measure step|eval] [--config FILE] [--steps 40]
        [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside one tree (its root first on sys.path); knows the layout before and after the architecture refactor.
TIMER = r"""
import json, os, sys, time
import torch
sys.path.insert(0, sys.argv[1])
if os.path.isdir(os.path.join(sys.argv[1], "surf", "app")):  # by the tree's layout (as EVAL_TIMER)
    from surf.app.registry import build_family, load_config
    from surf.training.trainer import MetaTrainer
    cfg = load_config(sys.argv[4])
    family = build_family(cfg)
else:
    from surf import config as config_mod
    from surf.family import build_family
    from surf.trainer import MetaTrainer
    cfg = config_mod.load(sys.argv[4])
    family = build_family(cfg)
trainer = MetaTrainer(family)
steps = int(sys.argv[2])
tasks = [trainer.train_tasks(step) for step in range(steps + 2)]
for batch in tasks[:2]:
    trainer.primal_dual_step(batch)
clock = time.process_time if sys.argv[3] == "cpu" else time.perf_counter
start = clock()
for batch in tasks[2:]:
    trainer.primal_dual_step(batch)
print(json.dumps({"seconds_per_step": (clock() - start) / steps, "module": sys.modules["surf"].__file__,
                  "threads": torch.get_num_threads()}))
"""


# ``surf run`` of the quickstart at 0 meta-steps in one tree: its evaluation, timed.
EVAL_TIMER = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
if os.path.isdir(os.path.join(sys.argv[1], "surf", "app")):  # by the tree's layout: an editable install of the
    from surf.app.cli import main                              # other tree would otherwise lend it surf.app
else:
    from surf.cli import main
clock = time.process_time if sys.argv[3] == "cpu" else time.perf_counter
with tempfile.TemporaryDirectory() as out:
    start = clock()
    code = main(["run", sys.argv[4], "-o", "trainer.steps=0", "--out", out + "/run",
                 "--quiet"])
    seconds = clock() - start
assert code in (0, None), f"surf run exited {code}"
print(json.dumps({"seconds_per_step": seconds, "module": sys.modules["surf"].__file__}))
"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def time_tree(root: Path, steps: int, clock: str, timer: str = TIMER, config: Path | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    config = config or root / "simulations" / "quickstart.yaml"
    out = subprocess.run([sys.executable, "-c", timer, str(root), str(steps), clock, str(config.resolve())],
                         capture_output=True, text=True, env=env, check=True, cwd=root)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(str(root)):
        raise RuntimeError(f"timed {result['module']} instead of the tree at {root}")
    return result["seconds_per_step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with (e.g. a commit or main)")
    parser.add_argument("--measure", choices=["step", "eval"], default="step",
                        help="step: seconds per meta-step; eval: seconds of the quickstart's evaluation")
    parser.add_argument("--config", type=Path, help="one config file for both trees (default: each tree's quickstart)")
    parser.add_argument("--steps", type=int, default=40, help="timed meta-steps per subprocess (--measure step)")
    parser.add_argument("--rounds", type=int, default=5, help="subprocesses per tree (alternating)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time (report these, on an idle machine); cpu: the process's CPU time "
                             "(less sensitive to other load, for development)")
    args = parser.parse_args()
    timer = TIMER if args.measure == "step" else EVAL_TIMER
    before = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base], check=True,
                       capture_output=True)
        try:
            times: dict[str, list[float]] = {"base": [], "this": []}
            for _ in range(args.rounds):
                for tree, root in (("base", base), ("this", REPO)):
                    times[tree].append(time_tree(root, args.steps, args.clock, timer, args.config))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    base_s, this_s = statistics.median(times["base"]), statistics.median(times["this"])
    print(json.dumps({"base": args.base, "measure": args.measure, "config": str(args.config or "quickstart"),
                      "steps": args.steps, "rounds": args.rounds,
                      "clock": args.clock, "times": times,
                      "uptime_before": before, "uptime_after": uptime()}, indent=1))
    unit = "s / meta-step" if args.measure == "step" else "s / evaluation"
    print(f"| tree | {unit} (median of {args.rounds}) |\n|---|---:|\n| {args.base} | {base_s:.4f} |\n"
          f"| this | {this_s:.4f} |\nthis / base = {this_s / base_s:.3f}")


if __name__ == "__main__":
    main()
