"""The two things a run does, shared by ``surf run`` / ``surf eval`` and ``surf sweep``: meta-train + evaluate a
config into a run directory, and re-evaluate a trained run under config overrides."""

from __future__ import annotations

from pathlib import Path

from surf.config import Config
from surf.errors import ConfigError


def train(cfg: Config, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Meta-train ``cfg`` into run directory ``out`` (or continue its last checkpoint), evaluate, write everything."""
    from surf.evaluate import evaluate
    from surf.experiment import Experiment
    from surf.plots import write_plots
    from surf.rundir import RunDir, git_sha
    from surf.trainer import MetaTrainer, read_metrics

    exp = Experiment(cfg)  # validates data and graph before anything is written
    run = RunDir(out)
    run.prepare(cfg, resume)
    trainer = MetaTrainer(exp, log=run.append_metrics)
    if resume:
        trainer.load(run.checkpoints / "last.pt")
        run.truncate_metrics(trainer.step)
    gap = exp.topology.spectral().get("spectral_gap")
    print(f"surf: run directory {run.path} ({exp.device}, {sum(p.numel() for p in trainer.model.parameters()):,} "
          f"parameters, graph '{cfg.topology.name}'" + (f", spectral gap {gap:.4f})" if gap is not None else ")"))
    trainer.train(run.checkpoints, progress=progress)
    summary = evaluate(exp, trainer.model)
    summary["training"] = {"steps": trainer.step, "best_val_loss": trainer.best_val,
                           "lambda": trainer.duals.value.tolist()}
    summary["git_sha"] = git_sha()
    run.write_summary(summary)
    write_plots(summary, read_metrics(run.metrics), run.plots)
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
    import torch

    from surf.evaluate import evaluate
    from surf.experiment import Experiment
    from surf.plots import write_plots
    from surf.rundir import RunDir

    exp = Experiment(cfg)
    model = exp.build_model()
    state = torch.load(RunDir(run_dir).checkpoints / "best.pt", map_location=exp.device, weights_only=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise ConfigError("the trained model's shapes do not fit the overridden config (the paper variant "
                          "depends on d, C and batch size; the compact one does not)") from None
    summary = evaluate(exp, model)
    summary["evaluated_from"] = str(run_dir)
    if out is not None:
        run = RunDir(out)
        run.prepare(cfg, resume=False)
        run.write_summary(summary)
        write_plots(summary, [], run.plots)
    return summary
