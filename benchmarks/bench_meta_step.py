"""Meta-step time, peak memory and a roofline of every case, side by side in one invocation.

Cases (each in its own subprocess so that peak RSS belongs to one case):
  quickstart        simulations/quickstart.yaml as shipped (digits, N=100, L=20, K=1, compact, heavy-ball warm
                    start, full local gradients, adam step feature, loss constraint, meta-train tasks with 10
                    stale drops)
  quickstart-10x2   the previous default: L=10, K=2, gradient-norm constraint, no step features, trained clean
  (every other case: the previous default's settings at another size; threads=0, i.e. chosen by problem size)
  paper-closed      paper variant at paper size (N=100, d=512, C=10, B=10, L=10, K=2), closed-form gradients
  compact-paper     compact variant at paper size (compact-paper-recompute: in the memory mode, model.recompute)
  compact-N1000, compact-N10000, compact-N100000   compact variant, d=64, C=10, random 3-regular graph, L=10,
                    K=2, full local gradients (N >= 10,000 with model.recompute=true)

One meta-step = unroll one task, constraint values, Lagrangian backward, Adam step and dual step (task
construction excluded; validation excluded). Every case runs 1 warm-up step, then ``--steps`` timed steps (wall
clock). A separate, untimed step is replayed under a dispatch mode that counts, per aten op, FLOPs (matmuls by
torch's FLOP formulas, sparse products as 2 nnz x columns, other ops one per output element) and bytes (every
dense input and output read or written once: no cache reuse, so an upper bound on memory traffic). The same run
measures the peaks of each case's device: a large fp32 matmul (GFLOP/s) and a large streaming add (GB/s), with the
thread count each case uses on a CPU. Cases run on the config's ``device: auto``: on a machine with a GPU they run
there, and the table adds their peak GPU memory (``benchmarks/gpu_check.sh``).

Any case name followed by ``+compile`` runs the same case with the compact local step (one chunk of agents:
their gradient, features, MLP and update) compiled by ``torch.compile`` (Inductor, CPU C++ codegen); its
compilation happens in the warm-up step, outside the timing, and is reported as ``compile_seconds``.

Usage:  python benchmarks/bench_meta_step.py [--steps 5] [--cases quickstart,compact-paper]
        python benchmarks/bench_meta_step.py --cases quickstart,quickstart+compile
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PREVIOUS = ["model.layers=10", "model.hops=2", "model.warm_start=none", "model.safeguard=none", "model.features=[]",
            "constraints.kind=gradient_norm", "constraints.epsilon=0.05", "constraints.gradient_on=full",
            "trainer.scenario=null", "trainer.scenario_severity=null"]
PAPER = PREVIOUS + ["threads=0", "data.source=gaussian", "data.gaussian_dim=512", "data.gaussian_samples=12000",
                    "num_agents=100", "data.batch_size=10", "constraints.form=difference",
                    "constraints.gradient_on=batch"]
LARGE = PREVIOUS + ["threads=0", "data.source=gaussian", "data.gaussian_dim=64", "topology.name=random_regular",
                    "model.variant=compact", "model.local_gradient=full", "constraints.form=ratio"]
CASES: dict[str, list[str]] = {
    "quickstart": [],
    "quickstart-10x2": PREVIOUS,
    "paper-closed": PAPER + ["model.variant=paper"],
    "compact-paper": PAPER + ["model.variant=compact"],
    "compact-paper-recompute": PAPER + ["model.variant=compact", "model.recompute=true"],
    "compact-N1000": LARGE + ["num_agents=1000", "data.gaussian_samples=30000"],
    "compact-N10000": LARGE + ["num_agents=10000", "data.gaussian_samples=30000", "model.recompute=true"],
    "compact-N100000": LARGE + ["num_agents=100000", "data.gaussian_samples=30000", "model.recompute=true"],
}


class TrafficCounter(TorchDispatchMode):
    """FLOPs and bytes of every aten op run under it (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops, self.bytes = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outputs = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        sparse = [t for t in tensors if t.layout != torch.strided]
        if sparse and outputs:
            self.flops += 2 * sparse[0]._nnz() * (outputs[0].numel() // max(outputs[0].shape[0], 1))
        elif func.overloadpacket in flop_registry:
            self.flops += flop_registry[func.overloadpacket](*args, **kwargs, out_val=out)
        else:
            self.flops += sum(t.numel() for t in outputs)
        self.bytes += sum(_nbytes(t) for t in tensors + outputs)
        return out


def _nbytes(t: torch.Tensor) -> int:
    if t.layout == torch.sparse_csr:
        return sum(x.numel() * x.element_size() for x in (t.values(), t.crow_indices(), t.col_indices()))
    if t.layout != torch.strided:
        return 0
    return t.numel() * t.element_size()


def peaks(threads: int, device: torch.device) -> dict[str, float]:
    """The fp32 matmul GFLOP/s and streaming GB/s of the case's device (on a CPU with ``threads`` threads)."""
    torch.set_num_threads(threads)
    size, length = (8192, 2**28) if device.type == "cuda" else (2048, 2**25)
    a = torch.randn(size, size, device=device)
    x, y = torch.randn(length, device=device), torch.randn(length, device=device)
    out = torch.empty_like(x)

    def rate(work: float, run) -> float:
        run()
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(5):
            run()
        _synchronize(device)
        return 5 * work / (time.perf_counter() - start) / 1e9

    return {"peak_gflops": rate(2 * size**3, lambda: a @ a),
            "peak_gbytes": rate(3 * length * 4, lambda: torch.add(x, y, out=out))}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(name: str, steps: int, skip_count: bool = False) -> dict:
    from surf.app.registry import build_family, load_config
    from surf.training.trainer import MetaTrainer

    base, _, compiled = name.partition("+")
    if compiled:
        import surf.models.udgd as udgd

        udgd._compact_update = torch.compile(udgd._compact_update, dynamic=False)
    cfg = load_config(REPO / "simulations" / "quickstart.yaml", CASES[base] + ["trainer.val_tasks=1"])
    family = build_family(cfg)
    trainer = MetaTrainer(family)
    times = []
    for step in range(steps + 1):  # step 0: warm-up (and compilation)
        batch = trainer.train_tasks(step)  # task construction is not part of the step (one task alive at a time)
        start = time.perf_counter()
        trainer.primal_dual_step(batch)
        _synchronize(family.device)
        times.append(time.perf_counter() - start)
        del batch
    warm_up, seconds = times[0], sum(times[1:]) / steps
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    if skip_count:
        return _row(name, seconds, peak_rss, trainer, family, 0, 0, warm_up - seconds if compiled else 0.0)
    with torch.compiler.set_stance("force_eager"), TrafficCounter() as counter:  # same ops, counted eagerly
        trainer.primal_dual_step(trainer.train_tasks(steps + 1))
    return _row(name, seconds, peak_rss, trainer, family, counter.flops, counter.bytes,
                warm_up - seconds if compiled else 0.0)


def _row(name: str, seconds: float, peak_rss: float, trainer, family, flops: int, nbytes: int,
         compile_seconds: float) -> dict:
    threads, device = torch.get_num_threads(), family.device
    peak_device = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"case": name, "seconds_per_step": seconds, "peak_rss_gib": peak_rss, "peak_device_gib": peak_device,
            "threads": threads, "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "device": str(device), "flops": flops, "bytes": nbytes, "compile_seconds": compile_seconds,
            **peaks(threads, device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--no-count", action="store_true",
                        help="skip the counted step (FLOPs and bytes; slow at 100,000 agents): no roofline columns")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.steps, args.no_count)))
        return
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results, failed = [], []
    for name in args.cases.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                              *(["--no-count"] if args.no_count else [])],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            failed.append(name)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nmachine: {platform.machine()}, torch {torch.__version__}; uptime before: {before}; after: {after}")
    paper = next((r for r in results if r["case"] == "paper-closed"), None)
    print("| case | device | threads | s / meta-step | peak RSS (GiB) | peak GPU memory (GiB) | GFLOP "
          "| GB moved (bound) | GFLOP/s | % of matmul peak | GB/s | % of stream bandwidth | FLOP/byte "
          "| vs paper-closed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        rate, traffic = r["flops"] / r["seconds_per_step"] / 1e9, r["bytes"] / r["seconds_per_step"] / 1e9
        ratio = f"{paper['seconds_per_step'] / r['seconds_per_step']:.1f}x" if paper else "-"
        roofline = (f"{r['flops'] / 1e9:.2f} | {r['bytes'] / 1e9:.2f} | {rate:.1f} | "
                    f"{100 * rate / r['peak_gflops']:.0f} % | {traffic:.1f} | "
                    f"{100 * traffic / r['peak_gbytes']:.0f} % | {r['flops'] / r['bytes']:.2f}") if r["bytes"] else (
            " | ".join(["(not counted)"] + ["-"] * 6))
        device_memory = "-" if r["peak_device_gib"] is None else f"{r['peak_device_gib']:.2f}"
        print(f"| {r['case']} | {r['device']} | {r['threads']} | {r['seconds_per_step']:.3f} | "
              f"{r['peak_rss_gib']:.2f} | {device_memory} | {roofline} | {ratio} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if failed:  # a case that did not run must not pass unnoticed under a table of the others
        sys.exit(f"failed cases: {', '.join(failed)}")


if __name__ == "__main__":
    main()
