"""Command line: ``surf run CONFIG``, ``surf eval RUN_DIR``, ``surf list``.

Errors in user input (config, data, graph) print one line and exit 2; numerical failures exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surf.errors import ConfigError, SurfError

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
    sub.add_parser("list", help="show topologies, task generators and bundled configs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "eval":
            return cmd_eval(args)
        return cmd_list()
    except SurfError as exc:
        print(f"surf: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("surf: interrupted; the last checkpoint was saved, continue with --resume", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from surf import config as config_mod
    from surf.evaluate import evaluate
    from surf.experiment import Experiment
    from surf.plots import write_plots
    from surf.rundir import RunDir, git_sha
    from surf.trainer import MetaTrainer, read_metrics

    cfg = config_mod.load(args.config, args.override)
    exp = Experiment(cfg)  # validates data and graph before anything is written
    if cfg.trainer.workers > 1:
        from surf.runtime.ray_train import check_scaling

        check_scaling(cfg.trainer.workers, exp.device)
    run = RunDir(args.out or REPO / "runs" / cfg.name)
    run.prepare(cfg, args.resume)
    trainer = MetaTrainer(exp, log=run.append_metrics)
    if args.resume:
        trainer.load(run.checkpoints / "last.pt")
        run.truncate_metrics(trainer.step)
    gap = exp.topology.spectral().get("spectral_gap")
    print(f"surf: run directory {run.path} ({exp.device}, {sum(p.numel() for p in trainer.model.parameters()):,} "
          f"parameters, graph '{cfg.topology.name}'" + (f", spectral gap {gap:.4f})" if gap is not None else ")"))
    if cfg.trainer.workers > 1:  # data-parallel on Ray Train (docs/distributed.md); same run directory
        from surf.runtime.ray_train import train_with_ray

        train_with_ray(trainer, run)
    else:
        trainer.train(run.checkpoints, progress=not args.quiet)
    summary = evaluate(exp, trainer.model)
    summary["training"] = {"steps": trainer.step, "best_val_loss": trainer.best_val,
                           "lambda": trainer.duals.value.tolist()}
    summary["git_sha"] = git_sha()
    run.write_summary(summary)
    write_plots(summary, read_metrics(run.metrics), run.plots)
    print(format_table(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from surf import config as config_mod
    from surf.evaluate import evaluate
    from surf.experiment import Experiment
    from surf.plots import write_plots
    from surf.rundir import RunDir

    source = RunDir(args.run_dir)
    best = source.checkpoints / "best.pt"
    if not best.exists():
        raise ConfigError(f"no trained model at {best}; train first with `surf run CONFIG --out {source.path}`")
    cfg = config_mod.load(source.config, args.override)
    exp = Experiment(cfg)
    model = exp.build_model()
    state = torch.load(best, map_location=exp.device, weights_only=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise ConfigError("the trained model's shapes do not fit the overridden config (the paper variant "
                          "depends on d, C and batch size; the compact one does not)") from None
    summary = evaluate(exp, model)
    if args.out:
        out = RunDir(args.out)
        out.prepare(cfg, resume=False)
        out.write_summary(summary)
        write_plots(summary, [], out.plots)
    print(format_table(summary))
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
