"""The run directory: resolved config, metrics stream, summary, checkpoints and plots of one run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from surf.config import Config, from_dict, identity, to_dict, upgraded
from surf.families.base import TaskFamily
from surf.utils.errors import ConfigError
from surf.utils.io import atomic_write, git_sha, load_checkpoint
from surf.utils.typed import get_dotted


class RunDir:
    """``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/``, ``plots/`` and, for a warm-started
    model, ``warm_start.json`` under one folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.warm_start = self.path / "warm_start.json"  # the classical method the model started from, if any
        self.plots = self.path / "plots"

    def prepare(self, cfg: Config, resume: bool, trains: bool = True) -> None:
        """Create the folder (fresh run) or check it matches ``cfg`` (resume); write the resolved config.

        ``trains=False`` (an evaluation or a deployment of a trained model): no ``checkpoints/`` folder, it would stay
        empty."""
        self.check(cfg, resume, trains)
        if resume:  # without checkpoints/last.pt (killed before the first one) the run starts over
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            self.plots.mkdir(parents=True, exist_ok=True)
            twin = self.path / "twin" / "checkpoints"  # surf.app.runner.train_twin's, retrained on resume
            for folder in (self.path, self.checkpoints, twin):  # temporary files of writes a killed process cut short
                for stale in folder.glob("*.*.tmp"):
                    stale.unlink(missing_ok=True)
            return
        if trains:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.plots.mkdir(parents=True, exist_ok=True)
        header = f"# resolved SURF config; git {git_sha()}; rerun: surf run {self.config}\n"
        atomic_write(self.config, header + yaml.safe_dump(to_dict(cfg), sort_keys=False))

    def check(self, cfg: Config, resume: bool, trains: bool = True) -> None:
        """What :meth:`prepare` checks, writing nothing: a fresh run needs an empty or new folder, ``--resume`` a run
        directory of the same config whose files are files (one-line errors)."""
        if not resume:
            self.check_fresh(resumable=trains)
            return
        if not self.config.is_file():
            raise ConfigError(f"--resume: {self.path} is not a run directory (no config.yaml); start without "
                              "--resume")
        try:
            saved = yaml.safe_load(self.config.read_text())
        except yaml.YAMLError:
            raise ConfigError(f"--resume: {self.config} is corrupt; start a new run without --resume") from None
        if not isinstance(saved, dict):
            raise ConfigError(f"--resume: {self.config} is empty or not a config; restore the run's resolved "
                              "config or start a new run without --resume")
        if identity(upgraded(saved)) != identity(to_dict(cfg)):  # fields added since: their defaults
            raise ConfigError(f"--resume: config differs from {self.config}; resume with the same config")
        for path, folder in ((self.checkpoints, True), (self.plots, True), (self.metrics, False),
                             (self.summary, False), (self.warm_start, False), (self.checkpoints / "last.pt", False),
                             (self.checkpoints / "best.pt", False)):
            if path.exists() and path.is_dir() != folder:
                kind = "a folder, not a file" if path.is_dir() else "a file, not a folder"
                raise ConfigError(f"--resume: {path} is {kind}; move it away and rerun")

    def check_fresh(self, resumable: bool) -> None:
        """A one-line error when the folder holds anything (before any work: a run, an evaluation or a deployment
        writes into an empty or new folder; only a training run can ``--resume``)."""
        if self.path.exists() and any(self.path.iterdir()):
            fix = "pass --resume or choose another --out" if resumable else "choose another --out"
            raise ConfigError(f"run directory {self.path} is not empty; {fix}")

    def append_metrics(self, row: dict) -> None:
        with self.metrics.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop rows written after the checkpoint at ``step`` (they will be recomputed identically), and a last row
        a killed process left half-written; ``step=-1`` drops every row (the run starts over). Any other row that is
        not a metrics row was damaged after it was written: a one-line error (dropping it would lose its step)."""
        if not self.metrics.exists():
            return
        lines = [(number, line) for number, line in enumerate(self.metrics.read_text().splitlines(), 1)
                 if line.strip()]
        for number, line in lines[:-1]:
            if _step_of(line) is None:
                raise ConfigError(f"--resume: {self.metrics} line {number} is not a metrics row (only the last row "
                                  "can be cut, by a killed run); repair or delete that line and rerun")
        rows = [line for _, line in lines if _step_of(line) is not None and _step_of(line) <= step]
        atomic_write(self.metrics, "".join(r + "\n" for r in rows))

    def write_summary(self, summary: dict) -> None:
        """``summary.json`` (a ``Summary.to_dict()``), atomically; written only when a run or evaluation completes."""
        atomic_write(self.summary, json.dumps(summary, indent=2) + "\n")

    def read_metrics(self) -> list[dict]:
        """All rows of ``metrics.jsonl`` (none before the first step)."""
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def best_model(self, family: TaskFamily) -> torch.nn.Module:
        """The model with the lowest validation loss (``checkpoints/best.pt``) for ``family``, in eval mode."""
        path = self.checkpoints / "best.pt"
        if not path.exists():
            raise ConfigError(f"no trained model at {path}; train first with `surf run CONFIG --out {self.path}`")
        model = family.build_model()
        state = load_checkpoint(path, family.device, ("model",))
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            changed = self._changed_shape_keys(family)
            paper = "the paper variant depends on d, C and batch size, the compact one does not; " \
                if family.cfg.family == "decentralized" else ""
            fix = f"keep the trained {', '.join(changed)}" if changed else \
                f"{paper}an edited {self.config.name} must be restored"
            raise ConfigError(f"the trained model's shapes do not fit {self.config} with the overrides given "
                              f"({fix})") from None
        return model.eval()

    def _changed_shape_keys(self, family: TaskFamily) -> list[str]:
        """``key=trained value`` for every key the model's shapes follow (``family.shape_keys``) that ``family.cfg``
        changes from the run's config."""
        try:
            trained = from_dict(upgraded(yaml.safe_load(self.config.read_text())))
        except (OSError, yaml.YAMLError, TypeError, ConfigError):  # no readable config: nothing to compare with
            return []
        values = {key: get_dotted(trained, key) for key in family.shape_keys}
        return [f"{key}={value}" for key, value in values.items() if value != get_dotted(family.cfg, key)]


def _step_of(line: str) -> int | None:
    """The step of a ``metrics.jsonl`` row; None for a blank or half-written one."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
