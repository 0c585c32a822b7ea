"""The run directory: resolved config, metrics stream, summary, checkpoints and plots of one run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from surf.config import Config, to_dict
from surf.errors import ConfigError


def git_sha() -> str:
    """The current commit of the source tree, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    """``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/`` and ``plots/`` under one folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
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
        atomic_write(self.summary, json.dumps(summary, indent=2) + "\n")
