"""The run directory: resolved config, metrics stream, summary, checkpoints and plots of one run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from surf.config import Config, to_dict
from surf.families.base import TaskFamily
from surf.utils.errors import ConfigError
from surf.utils.io import atomic_write, git_sha


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

    def prepare(self, cfg: Config, resume: bool) -> None:
        """Create the folder (fresh run) or check it matches ``cfg`` (resume); write the resolved config."""
        if resume:
            if not (self.checkpoints / "last.pt").exists():
                raise ConfigError(f"--resume: no checkpoint in {self.checkpoints}; start without --resume")
            saved = yaml.safe_load(self.config.read_text())
            if saved != to_dict(cfg):
                raise ConfigError(f"--resume: config differs from {self.config}; resume with the same config")
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigError(f"run directory {self.path} is not empty; pass --resume or choose another --out")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.plots.mkdir(parents=True, exist_ok=True)
        header = f"# resolved SURF config; git {git_sha()}; rerun: surf run {self.config}\n"
        atomic_write(self.config, header + yaml.safe_dump(to_dict(cfg), sort_keys=False))

    def append_metrics(self, row: dict) -> None:
        with self.metrics.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop rows written after the checkpoint at ``step`` (they will be recomputed identically)."""
        if not self.metrics.exists():
            return
        rows = [r for r in self.metrics.read_text().splitlines() if r.strip() and json.loads(r)["step"] <= step]
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
        state = torch.load(path, map_location=family.device, weights_only=False)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            raise ConfigError("the trained model's shapes do not fit the overridden config (the paper variant "
                              "depends on d, C and batch size; the compact one does not)") from None
        return model.eval()
