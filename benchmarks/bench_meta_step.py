"""Meta-training step time and peak memory, all cases measured side by side in one invocation.

Cases (each in its own subprocess so that peak RSS belongs to one case):
  paper-closed    paper variant at paper size (N=100, d=512, C=10, B=10, L=10, K=2), closed-form batched gradients
  paper-jacobian  the same with the authors' formulation: per-agent torch.autograd.functional.jacobian
                  (create_graph=True) for every constraint gradient
  compact-paper   compact variant at paper size
  compact-N1000, compact-N10000   compact variant on the quickstart problem (digits-sized d=64, C=10) at
                  1,000 and 10,000 agents (random 3-regular graph), with per-layer recomputation at 10,000

One meta-step = unroll one task, constraint values, Lagrangian backward, Adam step, dual step.
Usage:  python benchmarks/bench_meta_step.py [--steps 3] [--cases paper-closed,compact-paper]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from surf.config import ConstraintConfig  # noqa: E402
from surf.data.tasks import Task  # noqa: E402
from surf.models.udgd import Trajectory  # noqa: E402

PAPER = ["data.source=gaussian", "data.gaussian_dim=512", "data.gaussian_samples=12000", "num_agents=100",
         "model.layers=10", "model.hops=2", "data.batch_size=10", "constraints.form=difference",
         "constraints.gradient_on=batch"]
CASES: dict[str, list[str]] = {
    "paper-closed": PAPER + ["model.variant=paper"],
    "paper-jacobian": PAPER + ["model.variant=paper"],
    "compact-paper": PAPER + ["model.variant=compact"],
    "compact-N1000": ["data.source=gaussian", "data.gaussian_dim=64", "num_agents=1000",
                      "topology.name=random_regular", "model.variant=compact"],
    "compact-N10000": ["data.source=gaussian", "data.gaussian_dim=64", "num_agents=10000",
                       "topology.name=random_regular", "model.variant=compact", "model.recompute=true"],
}


def jacobian_gradient_norms(
    trajectory: Trajectory, task: Task, seed: int, agents: torch.Tensor | None = None
) -> torch.Tensor:
    """The authors' formulation: one ``autograd.functional.jacobian`` per agent and layer (create_graph=True)."""
    import torch.nn.functional as F

    from surf.data.batches import gather_batch

    batches = [trajectory.batches[0]] + list(trajectory.batches)
    norms = []
    for w, idx in zip(trajectory.weights, batches, strict=True):
        xb, yb = gather_batch(task.x_train, task.y_train, idx)
        grads = [
            torch.autograd.functional.jacobian(
                lambda wi, xi=xb[i], yi=yb[i]: F.cross_entropy(xi @ wi, yi), w[i], create_graph=True
            )
            for i in range(w.shape[0])
        ]
        norms.append(torch.linalg.vector_norm(torch.stack(grads)))
    return torch.stack(norms)


def run_case(name: str, steps: int) -> dict:
    from surf import config as config_mod
    from surf.constrained.constraints import descent_constraints
    from surf.families.classifier import family as family_mod
    from surf.training.trainer import MetaTrainer

    cfg = config_mod.from_dict({"name": name, "device": "auto"}, CASES[name] + ["trainer.val_tasks=1"])
    exp = family_mod.ClassifierFamily(cfg)
    if name == "paper-jacobian":
        def values(trajectory: Trajectory, task: Task, ccfg: ConstraintConfig, seed: int,
                   agents: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            vals = jacobian_gradient_norms(trajectory, task, seed, agents)
            return vals, descent_constraints(vals, ccfg.form, ccfg.epsilon)

        family_mod.constraint_values = values  # what ClassifierFamily.task_terms calls
    trainer = MetaTrainer(exp)
    tasks = trainer.train_tasks(0)  # task construction is not part of the step
    trainer.primal_dual_step(tasks)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        trainer.primal_dual_step(tasks)
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    params = sum(p.numel() for p in trainer.model.parameters())
    return {"case": name, "seconds_per_step": seconds, "peak_rss_gib": peak, "parameters": params,
            "device": str(exp.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.steps)))
        return
    results = []
    for name in args.cases.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    base = next((r for r in results if r["case"] == "paper-closed"), None)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print("| case | parameters | s / meta-step | peak RSS (GiB) | speed-up vs paper-closed |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{base['seconds_per_step'] / r['seconds_per_step']:.1f}x" if base else "-"
        print(f"| {r['case']} | {r['parameters']:,} | {r['seconds_per_step']:.3f} | {r['peak_rss_gib']:.2f} "
              f"| {ratio} |")


if __name__ == "__main__":
    main()
