"""Command line: ``surf run CONFIG``, ``surf eval RUN_DIR``, ``surf stress RUN_DIR --scenario NAME``, ``surf list``.

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
    st = sub.add_parser("stress", help="trained runs and tuned baselines across a stress scenario's severities")
    st.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="trained run(s), compared on the same drops")
    st.add_argument("--scenario", nargs="+", required=True, metavar="NAME", help="scenario(s), see `surf list`")
    st.add_argument("--severity", nargs="+", metavar="S", help="severities (default: the scenario's)")
    st.add_argument("--repeats", type=int, default=20, help="repetitions per task and severity (default 20)")
    st.add_argument("--tasks", type=int, help="meta-test tasks (default: eval.test_tasks of the first run)")
    st.add_argument("--baselines", nargs="*", default=["dgd", "dgd_momentum"], help="tuned baselines to stress")
    st.add_argument("--matrix", action="store_true",
                    help="train x test matrix: every run at each scenario's representative severity")
    st.add_argument("--out", help="output folder (default RUN_DIR/stress)")
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="show topologies, task generators, stress scenarios and bundled configs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "stress":
            return cmd_stress(args)
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
    run = RunDir(args.out or REPO / "runs" / cfg.name)
    run.prepare(cfg, args.resume)
    trainer = MetaTrainer(exp, log=run.append_metrics)
    if args.resume:
        trainer.load(run.checkpoints / "last.pt")
        run.truncate_metrics(trainer.step)
    gap = exp.topology.spectral().get("spectral_gap")
    print(f"surf: run directory {run.path} ({exp.device}, {sum(p.numel() for p in trainer.model.parameters()):,} "
          f"parameters, graph '{cfg.topology.name}'" + (f", spectral gap {gap:.4f})" if gap is not None else ")"))
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
    from surf.evaluate import evaluate
    from surf.plots import write_plots
    from surf.rundir import RunDir
    from surf.stress import load_trained

    cfg, exp, model = load_trained(args.run_dir, args.override)
    summary = evaluate(exp, model)
    if args.out:
        out = RunDir(args.out)
        out.prepare(cfg, resume=False)
        out.write_summary(summary)
        write_plots(summary, [], out.plots)
    print(format_table(summary))
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    from surf.scenarios import load_scenario, parse_severity
    from surf.stress import StressBench, matrix, matrix_table, stress_table, write_matrix, write_stress

    scenarios = [load_scenario(name) for name in args.scenario]  # bad names fail before any model is loaded
    severities = [parse_severity(text) for text in args.severity] if args.severity else None
    if severities is not None:
        if args.matrix or len(scenarios) > 1:
            raise ConfigError("--severity needs exactly one --scenario and no --matrix (the matrix uses each "
                              "scenario's representative severity)")
        for severity in severities:
            scenarios[0].bind(severity)
    if args.tasks is not None and args.tasks < 1:
        raise ConfigError(f"--tasks={args.tasks} must be >= 1")
    if args.repeats < 1:
        raise ConfigError(f"--repeats={args.repeats} must be >= 1")
    bench = StressBench(args.run_dirs, args.baselines, args.tasks)
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "stress"
    if args.matrix:
        result = matrix(bench, scenarios, args.repeats, progress=not args.quiet)
        write_matrix(result, out)
        print(matrix_table(result) + f"surf: wrote {out / 'matrix.json'} and {out / 'matrix.md'}")
        return 0
    for scenario in scenarios:
        result = bench.run(scenario, severities, args.repeats, progress=not args.quiet)
        plot = write_stress(result, out)
        print(stress_table(result) + f"surf: {result['seconds']:.0f} s; wrote {out / 'stress.json'}, "
              f"{out / 'stress.md'} and {plot}")
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
    from surf.scenarios import list_scenarios

    print("stress scenarios (surf stress --scenario, trainer.scenario):")
    for name, text in list_scenarios().items():
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
