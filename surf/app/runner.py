"""The two things a run does, shared by ``surf run`` / ``surf eval`` and ``surf sweep``: meta-train + evaluate a
config into a run directory, and re-evaluate a trained run under config overrides. Both work for every task family
(``surf.app.registry.FAMILIES``); training goes through Ray Train when ``trainer.workers > 1``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from surf.app.registry import FamilyEntry, build_family, family_entry
from surf.config import Config
from surf.evaluation.baselines import tune_classical_start
from surf.evaluation.summary import Summary, Training, WarmStart
from surf.evaluation.tuning_cache import run_tuning
from surf.families.base import TaskFamily
from surf.training.rundir import RunDir
from surf.training.trainer import MetaTrainer
from surf.utils.errors import ConfigError
from surf.utils.faults import pause_point
from surf.utils.io import atomic_write, git_sha
from surf.utils.locks import exclusive
from surf.utils.typed import build


def train_twin(family: TaskFamily, run: RunDir, progress: bool) -> torch.nn.Module:
    """Standard unrolling with the same config and seed (``constraints.kind=none``), trained by the same
    ``MetaTrainer`` into ``RUN_DIR/twin/`` (retrained from scratch, also on ``--resume``)."""
    cfg = family.cfg
    twin = build_family(dataclasses.replace(cfg, constraints=dataclasses.replace(cfg.constraints, kind="none")))
    folder = RunDir(run.path / "twin")
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    folder.metrics.write_text("")
    trainer = MetaTrainer(twin, log=folder.append_metrics)
    trainer.train(folder.checkpoints, progress=progress)
    return trainer.model


def warm_start(family: TaskFamily, trainer: MetaTrainer, run: RunDir, restored: bool) -> WarmStart | None:
    """``model.warm_start=heavy_ball``: tune heavy-ball DGD on the validation tasks (as the evaluation tunes its
    baseline), make every layer that method (``UnrolledDGD.start_from_heavy_ball``), record it in
    ``warm_start.json`` and write the step-0 checkpoint, so ``--resume`` and Ray Train workers start from exactly
    this model. A resumed run (``restored``: its checkpoint already holds the model) reads the record back with
    :func:`recorded_start`; here only when it was deleted: the search is deterministic, so it writes the same one."""
    if family.cfg.model.warm_start == "none":
        return None
    start = tune_classical_start(family)
    atomic_write(run.warm_start, json.dumps(dataclasses.asdict(start), indent=2) + "\n")
    if restored:
        print(f"surf: {run.warm_start} was missing; the heavy-ball search ran again and wrote the same record")
        return start
    trainer.model.start_from_heavy_ball(start.step, start.momentum)
    trainer.checkpoint(run.checkpoints)
    print(f"surf: warm start at heavy-ball DGD tuned on validation tasks: step {start.step:g}, momentum "
          f"{start.momentum:g} ({start.gradient_steps} gradient steps x {start.mixing_rounds} mixing rounds)")
    return start


def recorded_start(path: Path) -> WarmStart:
    """A run's ``warm_start.json``; an unreadable one is a one-line error naming it."""
    try:
        return build(WarmStart, json.loads(path.read_text()))
    except (OSError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{path} is not a readable warm-start record ({str(exc)[:120]}); delete it and rerun with "
                          "--resume: the heavy-ball search runs again and gives the same record") from None


def train(cfg: Config, out: Path, resume: bool = False, progress: bool = True, locked: bool = False) -> Summary:
    """Meta-train ``cfg`` into run directory ``out`` (or continue its last checkpoint), evaluate, write everything.

    One process at a time: ``<out>.lock`` is held meanwhile (``locked``: the caller holds it, as a sweep cell does),
    so a second ``surf run`` of the same folder (typed twice, or a cluster job requeued while the first still runs)
    is a one-line error instead of interleaving its checkpoints and metrics with the first's."""
    entry = family_entry(cfg)
    family = entry.build(cfg)  # validates data and graph before anything is written
    if cfg.trainer.workers > 1:
        from surf.runtime.ray_train import check_scaling

        check_scaling(cfg.trainer.workers, family.device)
    if locked:
        return _train(cfg, entry, family, Path(out), resume, progress)
    RunDir(out).check(cfg, resume)  # bad input fails before the lock file is written (again under it: prepare)
    with exclusive(Path(out), f"run directory {out}", "wait for it or stop it", "rerun"):
        return _train(cfg, entry, family, Path(out), resume, progress)


def _train(cfg: Config, entry: FamilyEntry, family: TaskFamily, out: Path, resume: bool, progress: bool) -> Summary:
    run = RunDir(out)
    trainer = MetaTrainer(family, log=run.append_metrics)  # a model too large for the memory: nothing written yet
    run.prepare(cfg, resume)
    restored = resume and (run.checkpoints / "last.pt").exists()  # else it was killed before its first checkpoint
    recorded = None
    if resume:  # everything is read (a damaged file: one line) before anything is written
        if restored:
            trainer.load(run.checkpoints / "last.pt")
            if cfg.model.warm_start != "none" and run.warm_start.exists():
                recorded = recorded_start(run.warm_start)
        run.truncate_metrics(trainer.completed_step())
        if restored:
            trainer.save_best(run.checkpoints)  # best.pt is last.pt's copy of the selected model: repair it if lost
    with run_tuning():  # the warm start's heavy-ball search is the evaluation's: done once
        start = recorded if recorded is not None else warm_start(family, trainer, run, restored)
        parameters = sum(p.numel() for p in trainer.model.parameters())
        print(f"surf: run directory {run.path} ({family.device}, {parameters:,} parameters, {family.describe()})")
        if cfg.trainer.workers > 1:  # data-parallel on Ray Train (docs/distributed.md); same run directory
            from surf.runtime.ray_train import train_with_ray

            train_with_ray(trainer, run)
        else:
            trainer.train(run.checkpoints, progress=progress)
        twin = train_twin(family, run, progress) if entry.wants_twin(cfg) else None
        pause_point("evaluate")
        summary = entry.evaluate(family, trainer.model, twin)
    summary.training = Training(
        steps=trainer.step, best_val_loss=trainer.best_validation.get("val_loss", trainer.best_val),
        duals=trainer.duals.value.tolist(), select_by=cfg.trainer.select_by, best_step=trainer.best_step,
        best_validation=trainer.best_validation, start_validation=trainer.start_validation, warm_start=start)
    summary.git_sha = git_sha()
    entry.write_plots(summary, run.read_metrics(), run.plots)
    entry.write_figures(family, trainer.model, twin, run.plots)
    run.write_summary(summary.to_dict())  # last: a run directory with a summary is complete (surf.app.cells)
    return summary


def reevaluate(run_dir: str | Path, cfg: Config, out: Path | None = None) -> Summary:
    """Evaluate the best model of ``run_dir`` under ``cfg`` (its config with overrides); write to ``out`` if given."""
    entry = family_entry(cfg)
    if out is not None:  # before the evaluation: it wrote into a folder in use only after all its work
        RunDir(out).check_fresh(resumable=False)
    family = entry.build(cfg)
    model = RunDir(run_dir).best_model(family)
    twin_dir = RunDir(Path(run_dir) / "twin")
    twin = twin_dir.best_model(family) if entry.wants_twin(cfg) and (twin_dir.checkpoints / "best.pt").exists() \
        else None
    summary = entry.evaluate(family, model, twin)
    summary.kind, summary.evaluated_from, summary.git_sha = "eval", str(run_dir), git_sha()
    if out is not None:
        run = RunDir(out)
        run.prepare(cfg, resume=False, trains=False)
        entry.write_plots(summary, [], run.plots)
        entry.write_figures(family, model, twin, run.plots)
        run.write_summary(summary.to_dict())  # last, as for a run
    return summary
