"""Command line: ``surf run CONFIG``, ``surf eval RUN_DIR``, ``surf sweep CONFIG``, ``surf report DIR``, ``surf list``.

Errors in user input (config, data, graph) print one line and exit 2; numerical failures exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surf.errors import SurfError

REPO = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surf", description="Decentralized learning with learned optimizers")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="meta-train an unrolled optimizer and evaluate it on meta-test tasks")
    run.add_argument("config", help="YAML config, e.g. simulations/quickstart.yaml")
    run.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                     help="dot-path override, e.g. -o trainer.steps=100 (repeatable)")
    run.add_argument("--out", help="run directory (default runs/<config name>)")
    run.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    ev = sub.add_parser("eval", help="re-evaluate a trained run on other tasks, graphs or n_async")
    ev.add_argument("run_dir")
    ev.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    ev.add_argument("--out", help="write summary.json and plots here (default: print only)")
    sw = sub.add_parser("sweep", help="run every cell of a sweep config (matrix of overrides); skips finished cells")
    sw.add_argument("config", help="sweep YAML, e.g. simulations/fig4_async.yaml")
    sw.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                    help="applied to every cell, last, e.g. -o data.source=npz -o data.path=features/cifar10.npz")
    sw.add_argument("--out", help="sweep directory (default runs/sweeps/<sweep name>[__<overrides>])")
    sw.add_argument("--store", help="where trained cells live, shared by sweeps (default runs/trained)")
    sw.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    sw.add_argument("--quiet", action="store_true", help="no progress bars")
    rep = sub.add_parser("report", help="aggregate a sweep directory into report.md and plots/*.png")
    rep.add_argument("sweep_dir")
    sub.add_parser("list", help="show topologies, task generators and bundled configs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "report":
            return cmd_report(args)
        return cmd_list()
    except SurfError as exc:
        print(f"surf: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("surf: interrupted; the last checkpoint was saved, continue with --resume", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from surf import config as config_mod
    from surf.runner import train

    cfg = config_mod.load(args.config, args.override)
    summary = train(cfg, Path(args.out) if args.out else REPO / "runs" / cfg.name, args.resume, not args.quiet)
    print(format_table(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from surf.runner import reevaluate, trained_config

    cfg = trained_config(args.run_dir, args.override)
    summary = reevaluate(args.run_dir, cfg, Path(args.out) if args.out else None)
    print(format_table(summary))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from surf.sweep import run_sweep

    return run_sweep(args.config, args.out, args.store, args.override, dry_run=args.dry_run,
                     progress=not args.quiet)


def cmd_report(args: argparse.Namespace) -> int:
    from surf.report import write_report

    print(f"surf: wrote {write_report(Path(args.sweep_dir))}")
    return 0


def cmd_list() -> int:
    from surf.data import PARTITIONS, SOURCES
    from surf.topology import GSOS, list_topologies

    print("topologies (topology.name):")
    for name, text in sorted(list_topologies().items()):
        print(f"  {name:22s} {text}")
    print(f"graph shift operators (topology.gso): {', '.join(GSOS)}")
    print("task generators (data.partition):")
    for name, text in PARTITIONS.items():
        print(f"  {name:22s} {text}")
    print("data sources (data.source):")
    for name, text in SOURCES.items():
        print(f"  {name:22s} {text}")
    print("configs (simulations/):")
    for path in sorted((REPO / "simulations").glob("*.yaml")):
        print(f"  {path.relative_to(REPO)}")
    return 0


def format_table(summary: dict) -> str:
    """The per-layer table printed at the end of a run."""
    per, rel = summary["per_layer"], summary["per_layer_relabelled"]
    layers = len(per["accuracy"]) - 1
    rounds_per_layer = summary["rounds"] // max(layers, 1)
    lines = [f"{summary['method']}: held-out meta-test metrics per layer ({summary['eval']['test_tasks']} tasks, "
             f"n_async={summary['eval']['n_async']})",
             f"{'layer':>5} {'rounds':>6} {'accuracy':>9} {'relabelled':>10} {'loss':>9} {'grad norm':>10}"]
    for layer in range(layers + 1):
        lines.append(f"{layer:>5} {layer * rounds_per_layer:>6} {per['accuracy'][layer]:>9.4f} "
                     f"{rel['accuracy'][layer]:>10.4f} {per['loss'][layer]:>9.4f} {per['grad_norm'][layer]:>10.4f}")
    lines.append(f"full-gradient norm decreased in {100 * summary['descent_fraction']:.1f}% of (task, layer) pairs")
    lines.append("tuned baselines on the same tasks (step sizes chosen on validation tasks):")
    for name, base in summary["baselines"].items():
        extra = f", momentum {base['momentum']:g}" if "momentum" in base else ""
        lines.append(f"  {name:14s} {base['rounds']:>4} rounds  accuracy {base['accuracy']:.4f}  relabelled "
                     f"{base['accuracy_relabelled']:.4f}  (step {base['step_size']:g}{extra})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
