"""Wall time of `surf sweep` and `surf stress` with 1 vs N workers (cells / stress chunks as Ray tasks), one invocation.

1. A 4-cell sweep: the quickstart (``threads: 1``) meta-trained for ``--steps`` steps with seeds 0-3, once with
   ``--workers 1`` (one process, no Ray: as before) and once with ``--workers N``, into separate stores (nothing is
   skipped or shared between the two).
2. ``surf stress`` of the first trained cell on the Fig. 4 scenario (n_async = 0..10, ``--tasks`` meta-test tasks x
   ``--repeats`` repetitions, tuned DGD and heavy-ball DGD), with ``--workers 1`` and ``--workers N``.

Every case is its own ``surf`` process, timed end to end (imports, Ray start, baseline tuning, writing). The script
checks that both sweeps wrote the same summaries and both stress runs the same ``stress.json`` (all but
``seconds``), and prints ``uptime`` before and after, the wall times and the ratios (target >= 1.7x for 2 workers on
2 cores). Run it alone on the machine: it uses every core.

With ``--stress-run RUN_DIR`` only part 2 runs, on that trained run (e.g. a fully trained quickstart, at the
stress defaults ``--tasks 30 --repeats 20``).

Usage:  python benchmarks/bench_sweep_workers.py [--steps 300] [--tasks 4] [--repeats 20] [--workers 2] [--keep DIR]
        python benchmarks/bench_sweep_workers.py --stress-run runs/quickstart --tasks 30 --repeats 20
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
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "RAY_USAGE_STATS_ENABLED": "0",
       "FLWR_TELEMETRY_ENABLED": "0"}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def surf(args: list[str], log: Path) -> float:
    """Run ``surf ARGS`` as its own process (output to ``log``); its wall time in seconds."""
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run([sys.executable, "-m", "surf.app.cli", *args], cwd=REPO, stdout=handle,
                              stderr=subprocess.STDOUT, env={**os.environ, **ENV}).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"surf {' '.join(args)} exited {code}; see {log}")
    return seconds


def summaries(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): p.read_text().replace(str(store), "STORE")
            for p in sorted(store.rglob("summary.json"))}


def stress_result(out: Path) -> dict:
    result = json.loads((out / "stress.json").read_text())["fig4_async"]
    result.pop("seconds")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="meta-steps per sweep cell (default 300)")
    parser.add_argument("--tasks", type=int, default=4, help="stress meta-test tasks (default 4)")
    parser.add_argument("--repeats", type=int, default=20, help="stress repetitions (default 20)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for every sweep cell (e.g. to shrink a smoke test)")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    parser.add_argument("--stress-run", help="time only `surf stress` on this trained run directory (no sweep)")
    args = parser.parse_args()
    before = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        sweep_file = root / "bench_sweep.yaml"
        sweep_file.write_text(json.dumps({
            "name": "bench_sweep", "base": str(REPO / "simulations" / "quickstart.yaml"),
            "set": {"trainer.steps": args.steps}, "matrix": {"seed": [0, 1, 2, 3]}}))
        overrides = [f for o in args.override for f in ("-o", o)]
        wall, stores = {}, {}
        sweep_workers = () if args.stress_run else (1, args.workers)  # --stress-run: no sweep to time
        for workers in sweep_workers:
            stores[workers] = root / f"store_{workers}"
            wall[f"sweep_{workers}"] = surf(
                ["sweep", str(sweep_file), *overrides, "--out", str(root / f"sweep_{workers}"), "--store",
                 str(stores[workers]), "--workers", str(workers), "--quiet"], root / f"sweep_{workers}.log")
        trained = args.stress_run or json.loads((root / "sweep_1" / "sweep.json").read_text())["cells"][0]["path"]
        for workers in (1, args.workers):
            wall[f"stress_{workers}"] = surf(
                ["stress", trained, "--scenario", "fig4_async", "--tasks", str(args.tasks), "--repeats",
                 str(args.repeats), "--out", str(root / f"stress_{workers}"), "--workers", str(workers), "--quiet"],
                root / f"stress_{workers}.log")
        identical = {"sweep": summaries(stores[1]) == summaries(stores[args.workers]) if stores else None,
                     "stress": stress_result(root / "stress_1") == stress_result(root / f"stress_{args.workers}")}
    n = args.workers
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "sweep": None if args.stress_run else
        f"4 cells: quickstart, trainer.steps={args.steps}, seeds 0-3 {' '.join(args.override)}".strip(),
        "stress": f"fig4_async, {args.tasks} tasks x {args.repeats} repetitions, 11 severities, dgd + dgd_momentum",
        "uptime_before": before, "uptime_after": uptime(),
        "wall_seconds": {k: round(v, 1) for k, v in wall.items()},
        f"sweep_speedup_{n}_workers": round(wall["sweep_1"] / wall[f"sweep_{n}"], 3) if stores else None,
        f"stress_speedup_{n}_workers": round(wall["stress_1"] / wall[f"stress_{n}"], 3),
        "identical_results": identical,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
