"""Command line: ``surf run | eval | sweep | report | stress | deploy | features | list``.

Errors in user input (config, data, graph) print one line and exit 2; numerical failures exit 1.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from surf import __version__
from surf.utils.errors import ConfigError, SurfError
from surf.utils.paths import REPO, check_output_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from surf.config import Config


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes are one line naming the fix (``--help`` shows the usage), exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"surf: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="surf", description="Decentralized learning with learned optimizers")
    parser.add_argument("--version", action="version", version=f"surf {__version__}")
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
    dep = sub.add_parser("deploy", help="evaluate a trained run with agents as Flower clients on the graph")
    dep.add_argument("run_dir")
    dep.add_argument("--runtime", default="flower", metavar="NAME",
                     help="flower (simulation engine, default) or flower-deployment (local SuperLink + SuperNodes)")
    dep.add_argument("--agents-per-node", type=int, metavar="M",
                     help="flower: at most M agents per node (agents split evenly; default 1)")
    dep.add_argument("--nodes", type=int, metavar="M", help="flower-deployment: number of SuperNodes")
    dep.add_argument("--partition", metavar="DIR", help="flower-deployment: node data files from `surf partition` "
                     "(default: written for this deployment)")
    dep.add_argument("--baselines", nargs="*", metavar="NAME", default=["dgd", "dgd_momentum", "dsgd"],
                     help="baselines relayed after SURF: any of dgd dgd_momentum dsgd (none: SURF only)")
    dep.add_argument("--rejoin", metavar="resume|out",
                     help="flower-deployment: a restarted SuperNode resumes with its last state (default), or is "
                          "kept out")
    dep.add_argument("--deploy-timeout", type=float, metavar="S",
                     help="flower-deployment: give up after S seconds (default 7200)")
    dep.add_argument("--scenario", metavar="dropped:K", help="K agents dropped per layer (= -o eval.n_async=K)")
    dep.add_argument("--tasks", type=int, help="meta-test tasks (default eval.test_tasks), plus relabelled twins")
    dep.add_argument("--round-timeout", type=float, metavar="S",
                     help="a node that has not answered S s after the first reply of a round is dropped")
    dep.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    dep.add_argument("--out", help="run directory (default runs/<name>_flower)")
    part = sub.add_parser("partition", help="cut a run's meta-test tasks into one data file per Flower node")
    part.add_argument("run_dir")
    part.add_argument("--nodes", type=int, required=True, metavar="M", help="number of nodes (agents split evenly)")
    part.add_argument("--out", required=True, metavar="DIR", help="folder for node_0.npz ... node_<M-1>.npz")
    part.add_argument("--tasks", type=int, help="meta-test tasks (default eval.test_tasks)")
    part.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    sw = sub.add_parser("sweep", help="run every cell of a sweep config (matrix of overrides); skips finished cells")
    sw.add_argument("config", help="sweep YAML, e.g. simulations/fig4_async.yaml")
    sw.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                    help="applied to every cell, last, e.g. -o data.source=npz -o data.path=features/cifar10.npz")
    sw.add_argument("--out", help="sweep directory (default runs/sweeps/<sweep name>[__<overrides>])")
    sw.add_argument("--store", help="where trained cells live, shared by sweeps (default runs/trained)")
    sw.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    sw.add_argument("--quiet", action="store_true", help="no progress bars")
    _ray_arguments(sw, "cells")
    rep = sub.add_parser("report", help="aggregate a sweep directory into report.md and plots/*.png")
    rep.add_argument("sweep_dir")
    feat = sub.add_parser("features", help="train a CNN on MNIST / CIFAR-10 files and cache image features as .npz")
    feat.add_argument("--dataset", required=True, choices=["mnist", "cifar10"])
    feat.add_argument("--root", required=True, help="folder with the official files (nothing is downloaded)")
    feat.add_argument("--out", help="feature file (default features/<dataset>_<arch>.npz)")
    feat.add_argument("--arch", default="resnet18", choices=["resnet18", "small"],
                      help="resnet18: CIFAR ResNet-18, 512 features (paper); small: 6-layer CNN, 128 features")
    feat.add_argument("--epochs", type=int, default=10)
    feat.add_argument("--batch-size", type=int, default=128)
    feat.add_argument("--lr", type=float, default=0.05, help="SGD (Nesterov, cosine schedule) learning rate")
    feat.add_argument("--limit", type=int, help="use only N training images (keyed random subset), for quick runs")
    feat.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    feat.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    feat.add_argument("--seed", type=int, default=0)
    feat.add_argument("--force", action="store_true", help="rebuild even if --out was built with these settings")
    feat.add_argument("--quiet", action="store_true", help="no progress bar")
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
    _ray_arguments(st, "chunks of (task, severity, repetition) runs")
    sub.add_parser("list", help="show topologies, task generators, stress scenarios and bundled configs")
    return parser


def _ray_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"run {what} as Ray tasks, N at once (default 1: in this process, no Ray; with "
                             "--address: the cluster's CPUs)")
    parser.add_argument("--address", metavar="ADDR",
                        help="an existing Ray cluster: ray://HOST:PORT, HOST:PORT or auto (docs/sweeps.md)")


def _check_workers(args: argparse.Namespace) -> None:
    from surf.runtime.ray_cluster import MAX_WORKERS

    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers={args.workers} must be in [1, {MAX_WORKERS}]")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for flag in ("out", "store"):  # before any work: a file in the way is a one-line error, not a traceback
            if getattr(args, flag, None):
                check_output_path(getattr(args, flag), f"--{flag}", folder=args.command != "features")
        commands = {"run": cmd_run, "eval": cmd_eval, "sweep": cmd_sweep, "report": cmd_report, "stress": cmd_stress,
                    "deploy": cmd_deploy, "partition": cmd_partition, "features": cmd_features, "list": cmd_list}
        return commands[args.command](args)
    except SurfError as exc:
        print(f"surf: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        after = "the last checkpoint was saved, continue with --resume" if args.command in ("run", "sweep") else \
            "every process it started was stopped"
        print(f"surf: interrupted; {after}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `surf sweep --dry-run | head`: the reader left early, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        after = "; the previous checkpoint is intact: continue with --resume" if args.command in ("run", "sweep") \
            else ""
        print(f"surf: error: no space left on the disk{where}; free some and rerun{after}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as a RuntimeError
        too_large = r"can't allocate memory|out of memory|size calculation overflowed"  # the last: past 2**63 bytes
        if not isinstance(exc, MemoryError) and not re.search(too_large, str(exc)):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        size = f" asking for {int(asked.group(1)) / 2**30:,.1f} GiB" if asked else ""
        print(f"surf: error: out of memory{size}; lower the sizes the config asks for (agents, samples, layers, "
              "image size; for the classifier, model.recompute=true trades time for memory)", file=sys.stderr)
        return 1


def cmd_run(args: argparse.Namespace) -> int:
    from surf.app.registry import family_entry, load_config
    from surf.app.runner import train

    cfg = load_config(args.config, args.override)
    summary = train(cfg, Path(args.out) if args.out else REPO / "runs" / cfg.name, args.resume, not args.quiet)
    print(family_entry(cfg).format_table(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from surf.app.registry import family_entry, trained_config
    from surf.app.runner import reevaluate

    cfg = trained_config(args.run_dir, args.override)
    summary = reevaluate(args.run_dir, cfg, Path(args.out) if args.out else None)
    print(family_entry(cfg).format_table(summary))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from surf.app.sweep_run import run_sweep

    _check_workers(args)
    return run_sweep(args.config, args.out, args.store, args.override, dry_run=args.dry_run,
                     progress=not args.quiet, workers=args.workers, address=args.address)


def cmd_report(args: argparse.Namespace) -> int:
    from surf.reporting.sweep_report import write_report

    print(f"surf: wrote {write_report(Path(args.sweep_dir))}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    import torch

    from surf.config import MAX_THREADS
    from surf.data.features import FeatureSettings, build_features, default_out
    from surf.utils.device import resolve_device

    settings = FeatureSettings(args.dataset, args.arch, args.epochs, args.batch_size, args.lr, limit=args.limit,
                               seed=args.seed)
    if not 0 <= args.threads <= MAX_THREADS:
        raise ConfigError(f"--threads {args.threads} must be in [0, {MAX_THREADS}] (0: torch's default)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else default_out(REPO, settings)
    meta = build_features(settings, args.root, out, resolve_device(args.device), not args.quiet, args.force)
    verb = "reused (same settings; --force rebuilds)" if meta["reused"] else f"written in {meta['seconds']:.0f} s"
    print(f"surf: {out} {verb}: {meta['train_images']} train / {meta['test_images']} test images, "
          f"{meta['feature_dim']} features; extractor accuracy train {meta['extractor_train_accuracy']:.4f}, "
          f"test {meta['extractor_test_accuracy']:.4f}")
    print(f"surf: use it with -o data.source=npz -o data.path={out} (the test split becomes the meta-test pool)")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from surf.app.registry import DEPLOY_RUNTIMES, load_trained
    from surf.reporting.run_plots import plot_relay_traffic, write_plots
    from surf.reporting.tables import format_runtime, format_table
    from surf.training.rundir import RunDir
    from surf.utils.io import git_sha

    overrides = list(args.override)
    if args.runtime not in DEPLOY_RUNTIMES:
        raise ConfigError(f"--runtime {args.runtime!r} is not one of {', '.join(DEPLOY_RUNTIMES)} (see `surf list`)")
    if args.scenario:
        kind, _, count = args.scenario.partition(":")
        if kind != "dropped" or not count.isdigit():
            raise ConfigError(f"--scenario {args.scenario!r}: expected dropped:K (K agents dropped per layer)")
        overrides.append(f"eval.n_async={count}")
    unknown = sorted(set(args.baselines) - {"dgd", "dgd_momentum", "dsgd"})
    if unknown:
        raise ConfigError(f"--baselines {unknown[0]!r} is not one of dgd, dgd_momentum, dsgd")
    for flag, value, runtime in (("--agents-per-node", args.agents_per_node, "flower"),
                                 ("--nodes", args.nodes, "flower-deployment"),
                                 ("--partition", args.partition, "flower-deployment"),
                                 ("--rejoin", args.rejoin, "flower-deployment"),
                                 ("--deploy-timeout", args.deploy_timeout, "flower-deployment")):
        if value is not None and runtime != args.runtime:  # it was ignored
            raise ConfigError(f"{flag} applies to --runtime {runtime} only; drop it or pass --runtime {runtime}")
    if args.rejoin not in (None, "resume", "out"):
        raise ConfigError(f"--rejoin {args.rejoin!r}: use resume (with its last state) or out (kept out)")
    for flag, seconds in (("--round-timeout", args.round_timeout), ("--deploy-timeout", args.deploy_timeout)):
        if seconds is not None and not 0 < seconds < math.inf:  # NaN fails too
            raise ConfigError(f"{flag}={seconds} must be a positive number of seconds")
    family, model = load_trained(args.run_dir, overrides, _decentralized("deploy", args.run_dir))
    out = RunDir(args.out or REPO / "runs" / f"{family.cfg.name}_{args.runtime.replace('-', '_')}")
    out.check_fresh(resumable=False)
    tasks, baselines = _tasks(args, family.cfg.eval.test_tasks), tuple(args.baselines)
    if args.runtime == "flower":
        from surf.runtime.flower.deploy import deploy

        per_node = 1 if args.agents_per_node is None else args.agents_per_node
        summary = deploy(family, model, per_node, tasks, args.round_timeout, baselines=baselines)
    else:
        from surf.runtime.flower.deploy import check_request
        from surf.runtime.flower.launcher import deploy_locally

        if args.nodes is None:
            raise ConfigError("--runtime flower-deployment needs --nodes M (the number of SuperNodes)")
        check_request(family, args.nodes, tasks)
        summary = deploy_locally(family, Path(args.run_dir), args.nodes, tasks, args.partition and Path(args.partition),
                                 args.round_timeout or 60.0, baselines, args.rejoin or "resume",
                                 7200.0 if args.deploy_timeout is None else args.deploy_timeout)
    summary.git_sha = git_sha()
    out.prepare(family.cfg, resume=False, trains=False)
    out.write_summary(summary.to_dict())
    write_plots(summary, [], out.plots)
    plot_relay_traffic({name: job["communication"] for name, job in summary.runtime.jobs.items()},
                       out.plots / "relay_traffic.png")
    print(format_table(summary))
    print(format_runtime(summary.runtime))
    return 0


def _decentralized(command: str, run_dir: str) -> Callable[[Config], None]:
    """deploy, partition and stress run agents on a graph: the check that refuses a run of another family (LISTA,
    inpainting), before its data is built."""
    def check(cfg: Config) -> None:
        if cfg.family != "decentralized":
            raise ConfigError(f"surf {command} runs the decentralized family; {run_dir} is '{cfg.family}' (use surf "
                              "eval)")
    return check


def _tasks(args: argparse.Namespace, default: int) -> int:
    """``--tasks``, or the config's count when it is not given (``--tasks 0`` is checked, not taken as absent)."""
    return default if args.tasks is None else args.tasks


def cmd_partition(args: argparse.Namespace) -> int:
    from surf import config as config_mod
    from surf.app.registry import build_family, trained_config
    from surf.runtime.flower.deploy import check_request
    from surf.runtime.flower.partition import check_overrides, write_partition

    check_overrides([key for key, _ in config_mod.parse_overrides(args.override)])
    cfg = trained_config(args.run_dir, args.override)
    _decentralized("partition", args.run_dir)(cfg)
    family = build_family(cfg)
    tasks = _tasks(args, family.cfg.eval.test_tasks)
    check_request(family, args.nodes, tasks)
    paths = write_partition(family, args.nodes, tasks, Path(args.out))
    print(f"surf: wrote {len(paths)} node data files to {args.out} ({tasks} meta-test tasks); start SuperNode s with "
          f"--node-config 'data=\"{Path(args.out).resolve()}/node_<s>.npz\"'")
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    from surf.app.registry import load_trained
    from surf.evaluation.stress import Learned, StressBench, check_plan, matrix
    from surf.reporting.stress import matrix_table, read_stress, stress_table, write_matrix, write_stress
    from surf.scenarios.scenario import load_scenario, parse_severity

    scenarios = [load_scenario(name) for name in args.scenario]  # bad names fail before any model is loaded
    severities = [parse_severity(text) for text in args.severity] if args.severity else None
    if severities is not None:
        if args.matrix or len(scenarios) > 1:
            raise ConfigError("--severity needs exactly one --scenario and no --matrix (the matrix uses each "
                              "scenario's representative severity)")
        scenarios[0].check_severity_given("--severity")
        for severity in severities:
            scenarios[0].bind(severity)
    if args.tasks is not None and args.tasks < 1:
        raise ConfigError(f"--tasks={args.tasks} must be >= 1")
    if args.repeats < 1:
        raise ConfigError(f"--repeats={args.repeats} must be >= 1")
    _check_workers(args)
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "stress"
    if not args.matrix:
        read_stress(out / "stress.json")  # the record a result is merged into: damaged, it fails before the work
    learned, family = [], None
    for run_dir in args.run_dirs:
        loaded, model = load_trained(run_dir, check=_decentralized("stress", run_dir))
        label = Path(run_dir).name if all(m.label != Path(run_dir).name for m in learned) else str(run_dir)
        learned.append(Learned(label, loaded.cfg, model))
        family = family or loaded
    planned = len(scenarios) if args.matrix else len(severities) if severities else \
        max(len(scenario.severities) for scenario in scenarios)  # one scenario's units are held at a time
    check_plan(_tasks(args, family.cfg.eval.test_tasks), args.repeats, planned)
    mapper = None
    if args.address is not None or (args.workers or 1) > 1:  # a bad --address fails before the baselines are tuned
        from surf.runtime.ray_tasks import RayMapper

        mapper = RayMapper(args.workers, args.address, family.cfg.threads, family.device.type,
                           preload="surf.evaluation.stress")  # workers import it while the baselines are tuned
    bench = StressBench(family, learned, args.baselines, args.tasks)
    if args.matrix:
        result = matrix(bench, scenarios, args.repeats, progress=not args.quiet, mapper=mapper)
        write_matrix(result, out)
        print(matrix_table(result) + f"surf: wrote {out / 'matrix.json'} and {out / 'matrix.md'}")
        return 0
    for scenario in scenarios:
        result = bench.run(scenario, severities, args.repeats, progress=not args.quiet, mapper=mapper)
        plot = write_stress(result, out)
        print(stress_table(result) + f"surf: {result.seconds:.0f} s; wrote {out / 'stress.json'}, "
              f"{out / 'stress.md'} and {plot}")
    return 0


def cmd_list(args: argparse.Namespace | None = None) -> int:
    from surf.app.registry import catalogue

    for title, entries in catalogue().items():
        print(f"{title}:")
        for name, text in entries.items():
            print(f"  {name:22s} {text}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
