"""Exclusive use of a folder by one process at a time, across hosts: ``<folder>.lock`` names the host and process.

A sweep cell (``surf.app.cells``) and a run directory of ``surf run`` are each trained by one process at once: a
second sweep, a cluster job requeued while the first still runs, or the same command typed twice would interleave
their checkpoints and metrics. The lock is created atomically (a hard link: also on NFS) and refreshed every
``HEARTBEAT_S`` seconds. It is stale, and taken over, when its process is gone (same host) or nobody refreshed it for
``STALE_S`` seconds (another host: its node died). Breaking a stale lock is serialized by ``<folder>.lock.break``
(also a hard link), under which the breaker checks that the lock is still the one it judged stale: two processes that
find the same stale lock never both take it (without it, the slower one deleted the lock the faster one had just
taken).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from surf.utils.errors import ConfigError

HEARTBEAT_S = 20.0
STALE_S = 120.0
BREAK_STALE_S = 10.0  # a breaker holds <folder>.lock.break for microseconds: older, its process died while breaking


def lock_path(path: Path) -> Path:
    """``<folder>.lock`` beside the folder (``--out .`` has no name of its own: its absolute path does)."""
    path = Path(path).resolve()
    return path.with_name(path.name + ".lock")


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
def exclusive(path: Path, what: str, busy_fix: str, raced_fix: str) -> Iterator[None]:
    """Hold ``<path>.lock`` for the block; a one-line error naming ``what`` and its holder when a live process holds
    it (``busy_fix``: what to do then), or when another process took it while this one broke a stale lock
    (``raced_fix``)."""
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
                    raise ConfigError(f"{what} is being run by process {holder[1]} on {holder[0]}; {busy_fix}") \
                        from None
                _break_stale(lock, judged, holder, mine)  # its process is gone
        else:
            raise ConfigError(f"{what}: another process took its lock meanwhile; {raced_fix}")
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
