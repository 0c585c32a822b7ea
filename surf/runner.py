"""The two things a run does, shared by ``surf run`` / ``surf eval`` and ``surf sweep``: meta-train + evaluate a
config into a run directory, and re-evaluate a trained run under config overrides. Both work for every task family
(``surf.family``); training goes through Ray Train when ``trainer.workers > 1``."""

from __future__ import annotations

from pathlib import Path

from surf.config import Config
from surf.errors import ConfigError


def train(cfg: Config, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Meta-train ``cfg`` into run directory ``out`` (or continue its last checkpoint), evaluate, write everything."""
    from surf.family import build_family, family_report
    from surf.rundir import RunDir, git_sha
    from surf.trainer import MetaTrainer, read_metrics

    exp = build_family(cfg)  # validates data and graph before anything is written
    report = family_report(cfg)  # the family's evaluation, table and plots
    if cfg.trainer.workers > 1:
        from surf.runtime.ray_train import check_scaling

        check_scaling(cfg.trainer.workers, exp.device)
    run = RunDir(out)
    run.prepare(cfg, resume)
    trainer = MetaTrainer(exp, log=run.append_metrics)
    if resume:
        trainer.load(run.checkpoints / "last.pt")
        run.truncate_metrics(trainer.step)
    print(f"surf: run directory {run.path} ({exp.device}, {sum(p.numel() for p in trainer.model.parameters()):,} "
          f"parameters, {report.describe(exp)})")
    if cfg.trainer.workers > 1:  # data-parallel on Ray Train (docs/distributed.md); same run directory
        from surf.runtime.ray_train import train_with_ray

        train_with_ray(trainer, run)
    else:
        trainer.train(run.checkpoints, progress=progress)
    summary = report.evaluate(exp, trainer.model, run.path, progress)
    summary["training"] = {"steps": trainer.step, "best_val_loss": trainer.best_val,
                           "lambda": trainer.duals.value.tolist()}
    summary["git_sha"] = git_sha()
    run.write_summary(summary)
    report.write_plots(summary, read_metrics(run.metrics), run.plots)
    return summary


def trained_config(run_dir: str | Path, overrides: list[str]) -> Config:
    """The config of a trained run with ``overrides`` applied (validated; nothing is loaded yet)."""
    from surf import config as config_mod
    from surf.rundir import RunDir

    source = RunDir(run_dir)
    best = source.checkpoints / "best.pt"
    if not best.exists():
        raise ConfigError(f"no trained model at {best}; train first with `surf run CONFIG --out {source.path}`")
    return config_mod.load(source.config, overrides)


def reevaluate(run_dir: str | Path, cfg: Config, out: Path | None = None) -> dict:
    """Evaluate the best model of ``run_dir`` under ``cfg`` (its config with overrides); write to ``out`` if given."""
    from surf.family import family_report, load_model
    from surf.rundir import RunDir

    exp, model = load_model(run_dir, cfg)
    report = family_report(cfg)
    summary = report.evaluate(exp, model, None, False)
    summary["evaluated_from"] = str(run_dir)
    if out is not None:
        run = RunDir(out)
        run.prepare(cfg, resume=False)
        run.write_summary(summary)
        report.write_plots(summary, [], run.plots)
    return summary
