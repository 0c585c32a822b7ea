"""Baselines alone on the quickstart setting: tuned on validation tasks, evaluated on meta-test tasks (plain and
relabelled) at given round counts, with their communication. No trained model is needed.

    python benchmarks/baselines_digits.py --rounds 20 200 --out runs/baselines_digits.json
    python benchmarks/baselines_digits.py --star --rounds 10 25 --out runs/baselines_digits_star.json

``--star`` runs the paper's Fig. 2 (right) setting: star graph, node 0 a data-less server, 10 of 99 clients per
round, and reports accuracy relative to centralized training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from surf import config as config_mod
from surf.app.registry import load_config
from surf.evaluation.baselines import evaluate_baseline
from surf.families.classifier.family import ClassifierFamily

REPO = Path(__file__).resolve().parent.parent
GOSSIP = ["dgd", "dgd_momentum", "dsgd", "dfedavgm", "diging", "extra", "centralized"]
STAR = ["fedavg", "fedprox", "scaffold", "dgd_momentum", "centralized"]
STAR_OVERRIDES = ["topology.name=star", "topology.gso=lambda_max", "model.server=true", "model.hops=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "simulations" / "quickstart.yaml"))
    parser.add_argument("--rounds", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--methods", nargs="+", help="default: all gossip methods (or all star methods with --star)")
    parser.add_argument("--star", action="store_true")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    overrides = (STAR_OVERRIDES if args.star else []) + args.override
    cfg = load_config(args.config, overrides)
    exp = ClassifierFamily(cfg)
    tasks = [exp.task("test", i) for i in range(cfg.eval.test_tasks)]
    relabelled = [exp.task("test", i, relabel=True) for i in range(cfg.eval.test_tasks)]
    methods = args.methods or (STAR if args.star else GOSSIP)
    runs = [(name, rounds) for rounds in args.rounds for name in methods if name != "centralized"]
    if "centralized" in methods:  # the ceiling: trained for eval.centralized_rounds steps
        runs.insert(0, ("centralized", cfg.eval.centralized_rounds))
    results: dict[str, dict] = {}
    for name, rounds in runs:
        start = time.perf_counter()
        comparison = evaluate_baseline(exp, name, tasks, relabelled, rounds)
        entry = {**comparison.final, "hyper": comparison.hyper, "bytes": comparison.communication.bytes,
                 "seconds": time.perf_counter() - start}
        results[f"{name}@{rounds}"] = entry
        print(f"{name:14s} {rounds:>4} rounds  accuracy {entry['accuracy']:.4f}  relabelled "
              f"{entry['accuracy_relabelled']:.4f}  bytes {entry['bytes']:>12,}  "
              f"{entry['hyper']}  ({entry['seconds']:.0f} s)", flush=True)
    if "centralized" in methods:
        ceiling = results[f"centralized@{cfg.eval.centralized_rounds}"]["accuracy"]
        for entry in results.values():
            entry["relative_accuracy"] = entry["accuracy"] / ceiling
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"config": config_mod.to_dict(cfg), "results": results}, indent=1))
    print("| method | rounds | accuracy | relabelled | relative | bytes | hyper-parameters |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for key, entry in results.items():
        name, rounds = key.split("@")
        relative = f"{entry['relative_accuracy']:.3f}" if "relative_accuracy" in entry else "—"
        hyper = ", ".join(f"{k} {v:g}" for k, v in entry["hyper"].items())
        print(f"| {name} | {rounds} | {entry['accuracy']:.4f} | {entry['accuracy_relabelled']:.4f} | {relative} | "
              f"{entry['bytes']:,} | {hyper} |")


if __name__ == "__main__":
    main()
