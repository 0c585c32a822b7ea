"""One sweep cell, run crash-safely by whichever process gets it: the sweep's own or a Ray worker on any node.

A cell is finished exactly when its ``summary.json`` exists: a run or an evaluation writes it last, atomically, after
everything else (``surf.app.runner``). So a process killed at any point leaves either a finished cell or one that is
run again: a trained cell with ``checkpoints/last.pt`` but no summary continues from it (``surf run --resume``);
anything else an interrupted cell left is cleared and the cell restarts.

While a cell runs, ``<cell>.lock`` names the host and process running it, so two sweeps never run the same cell at
once (:mod:`surf.utils.locks`: stale locks of dead processes are taken over).
"""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from pathlib import Path

from surf.app.runner import reevaluate, train
from surf.config import Config
from surf.evaluation.tuning_cache import shared_tuning
from surf.utils.errors import ConfigError
from surf.utils.locks import exclusive

TUNING = ".tuning"  # the store's folder of tuned baseline hyper-parameters (surf.evaluation.tuning_cache)


def cell_state(path: Path, trained: bool) -> str:
    """``finished`` (summary written), ``resume`` (a trained cell with a checkpoint) or ``todo``."""
    if (path / "summary.json").exists():
        return "finished"
    if trained and (path / "checkpoints" / "last.pt").exists():
        return "resume"
    return "todo"


def log_path(path: Path) -> Path:
    """Where a cell run by a worker writes its output: ``<cell>.log`` beside the cell (appended on every attempt)."""
    return path.with_name(path.name + ".log")


def cell_lock(path: Path) -> AbstractContextManager[None]:
    """Hold ``<cell>.lock`` while the cell runs (:func:`surf.utils.locks.exclusive`)."""
    return exclusive(path, f"cell {path}", "wait for it or stop that sweep", "rerun the sweep")


def run_cell(cfg: Config, path: Path, trained_from: Path | None = None, progress: bool = False) -> str:
    """Run one cell unless it is finished: train ``cfg`` into ``path`` (resuming its checkpoint), or re-evaluate the
    trained cell ``trained_from`` under ``cfg``. Returns the state the cell was found in."""
    trained = trained_from is None
    if trained_from == path:  # the trained cell's own evaluation: never clear the trained cell's directory
        if cell_state(path, trained=True) != "finished":
            raise ConfigError(f"eval cell {path}: its trained cell did not finish; rerun the sweep")
        return "finished"
    state = cell_state(path, trained)
    if state == "finished":
        return state
    with cell_lock(path):
        state = cell_state(path, trained)  # again, under the lock: another sweep may have finished it
        if state == "finished":
            return state
        if state == "todo" and path.exists():
            shutil.rmtree(path)  # interrupted before its first checkpoint: nothing worth keeping
        with shared_tuning((trained_from or path).parent / TUNING):  # cells on one store share tuned baselines
            if trained:
                train(cfg, path, resume=state == "resume", progress=progress, locked=True)
            else:
                reevaluate(trained_from, cfg, path)
    return state
