"""One sweep cell, run crash-safely by whichever process gets it: the sweep's own or a Ray worker on any node.

A cell is finished exactly when its ``summary.json`` exists: a run or an evaluation writes it last, atomically, after
everything else (``surf.app.runner``). So a process killed at any point leaves either a finished cell or one that is
run again: a trained cell with ``checkpoints/last.pt`` but no summary continues from it (``surf run --resume``);
anything else an interrupted cell left is cleared and the cell restarts.

While a cell runs, ``<cell>.lock`` names the host and process running it, so two sweeps never run the same cell at
once. The lock is created atomically (a hard link: also on NFS) and refreshed every ``HEARTBEAT_S`` seconds. It is
stale, and taken over, when its process is gone (same host) or nobody refreshed it for ``STALE_S`` seconds (another
host: its node died). Breaking a stale lock is serialized by ``<cell>.lock.break`` (also a hard link), under which the
breaker checks that the lock is still the one it judged stale: two sweeps that find the same stale lock never both run
the cell (without it, the slower one deleted the lock the faster one had just taken).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from surf.app.runner import reevaluate, train
from surf.config import Config
from surf.evaluation.tuning_cache import shared_tuning
from surf.utils.errors import ConfigError

HEARTBEAT_S = 20.0
STALE_S = 120.0
BREAK_STALE_S = 10.0  # a breaker holds <cell>.lock.break for microseconds: older, its process died while breaking
TUNING = ".tuning"  # the store's folder of tuned baseline hyper-parameters (surf.evaluation.tuning_cache)


def cell_state(path: Path, trained: bool) -> str:
    """``finished`` (summary written), ``resume`` (a trained cell with a checkpoint) or ``todo``."""
    if (path / "summary.json").exists():
        return "finished"
    if trained and (path / "checkpoints" / "last.pt").exists():
        return "resume"
    return "todo"


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def log_path(path: Path) -> Path:
    """Where a cell run by a worker writes its output: ``<cell>.log`` beside the cell (appended on every attempt)."""
    return path.with_name(path.name + ".log")


def _holder(lock: Path) -> tuple[str, int] | None:
    """(host, pid) written in ``lock`` (a bare pid: this host); None when it is gone or unreadable."""
    try:
        words = lock.read_text().split()
    except FileNotFoundError:
        return None
    if len(words) == 1 and words[0].isdigit():
        return socket.gethostname(), int(words[0])
    if len(words) == 2 and words[1].isdigit():
        return words[0], int(words[1])
    return None


def _alive(lock: Path, host: str, pid: int) -> bool:
    """Whether the holder of ``lock`` may still be running the cell."""
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's process
        return True
    try:
        return time.time() - lock.stat().st_mtime < STALE_S
    except FileNotFoundError:
        return False


def _identity(lock: Path) -> tuple[int, int] | None:
    """(device, inode) of ``lock``: which lock file it is, whatever its contents; None when there is none."""
    try:
        found = lock.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _break_stale(lock: Path, judged: tuple[int, int] | None, holder: tuple[str, int] | None, mine: Path) -> None:
    """Delete ``lock`` if it is still the file ``judged`` stale (same inode, same holder: an inode number can be
    reused), holding ``<lock>.break`` meanwhile; leave it when another process is breaking it (the caller retries)."""
    guard = lock.with_name(lock.name + ".break")
    try:
        os.link(mine, guard)
    except FileExistsError:
        try:
            if time.time() - guard.stat().st_mtime > BREAK_STALE_S:
                guard.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        return
    try:
        if judged is not None and _identity(lock) == judged and _holder(lock) == holder:
            lock.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


def _heartbeat(lock: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(lock)
        except OSError:
            return


@contextmanager
def cell_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` while the cell runs; a one-line error when a live process holds it."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    mine = lock.with_name(f"{lock.name}.{me.replace(' ', '.')}")
    mine.write_text(me)
    try:
        for _ in range(3):
            try:
                os.link(mine, lock)
                break
            except FileExistsError:
                judged = _identity(lock)
                holder = _holder(lock)
                if holder is not None and _alive(lock, *holder):
                    raise ConfigError(f"cell {path} is being run by process {holder[1]} on {holder[0]}; wait for "
                                      "it or stop that sweep") from None
                _break_stale(lock, judged, holder, mine)  # its process is gone
        else:
            raise ConfigError(f"cell {path}: another process took its lock meanwhile; rerun the sweep")
    finally:
        mine.unlink(missing_ok=True)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lock, stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        lock.unlink(missing_ok=True)


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
                train(cfg, path, resume=state == "resume", progress=progress)
            else:
                reevaluate(trained_from, cfg, path)
    return state
