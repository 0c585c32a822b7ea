"""A folder's lock knows host and process, is released, blocks a second holder while its holder lives — on this host
or, by its heartbeat, on another — and is taken over once that holder died; two processes that find the same stale
lock never both take it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surf.utils import locks
from surf.utils.errors import ConfigError
from surf.utils.locks import exclusive, lock_path


def cell_lock(path: Path):
    """The lock as a sweep cell takes it (surf.app.cells.cell_lock)."""
    return exclusive(path, f"cell {path}", "wait for it or stop that sweep", "rerun the sweep")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_names_host_and_process_and_is_released(tmp_path):
    cell = tmp_path / "cell"
    with cell_lock(cell):
        assert lock_path(cell).read_text() == f"{socket.gethostname()} {os.getpid()}"
        with pytest.raises(ConfigError, match=f"being run by process {os.getpid()} on {socket.gethostname()}"):
            with cell_lock(cell):
                pass
    assert not lock_path(cell).exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("holder", ["dead_pid", "old_format_dead_pid", "other_host_silent"])
def test_stale_locks_are_taken_over(tmp_path, holder):
    cell = tmp_path / "cell"
    lock = lock_path(cell)
    text = {"dead_pid": f"{socket.gethostname()} {dead_pid()}", "old_format_dead_pid": str(dead_pid()),
            "other_host_silent": "node-7 1"}[holder]
    lock.write_text(text)
    if holder == "other_host_silent":  # its node died: nobody refreshed the lock for longer than STALE_S
        old = time.time() - locks.STALE_S - 1
        os.utime(lock, (old, old))
    with cell_lock(cell):
        assert lock.read_text().endswith(str(os.getpid()))


def test_live_lock_of_another_host_blocks(tmp_path):
    cell = tmp_path / "cell"
    lock_path(cell).write_text("node-7 1")  # refreshed just now by its heartbeat
    with pytest.raises(ConfigError, match="being run by process 1 on node-7"):
        with cell_lock(cell):
            pass
    assert lock_path(cell).read_text() == "node-7 1"


def test_heartbeat_refreshes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    cell = tmp_path / "cell"
    with cell_lock(cell):
        os.utime(lock_path(cell), (0, 0))
        time.sleep(0.5)
        assert time.time() - lock_path(cell).stat().st_mtime < 5


def test_two_processes_that_find_the_same_stale_lock_never_both_take_it(tmp_path, monkeypatch):
    """The race of two sweeps breaking one stale lock: this process reads the dead holder, and before it acts another
    sweep breaks the lock and takes it. This process must then see the other's live lock, not delete it."""
    cell = tmp_path / "cell"
    lock = lock_path(cell)
    lock.write_text(f"{socket.gethostname()} {dead_pid()}")
    other = f"{socket.gethostname()} {os.getppid()}"  # a live process: the other sweep
    read = locks._holder

    def read_then_lose_the_race(path):
        found = read(path)
        if path == lock and not (tmp_path / "raced").exists():
            (tmp_path / "raced").touch()
            lock.unlink()  # the other sweep broke the stale lock ...
            (tmp_path / "theirs").write_text(other)
            os.link(tmp_path / "theirs", lock)  # ... and took it
        return found

    monkeypatch.setattr(locks, "_holder", read_then_lose_the_race)
    with pytest.raises(ConfigError, match=f"being run by process {os.getppid()}"):
        with cell_lock(cell):
            pass
    assert lock.read_text() == other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.lock", "raced", "theirs"]


@pytest.mark.parametrize("breaker", ["died_while_breaking", "breaking_now"])
def test_a_left_over_break_guard_is_cleared_and_a_fresh_one_is_waited_for(tmp_path, breaker):
    cell = tmp_path / "cell"
    lock, guard = lock_path(cell), tmp_path / "cell.lock.break"
    lock.write_text(f"{socket.gethostname()} {dead_pid()}")
    guard.write_text("node-7 1")
    if breaker == "died_while_breaking":
        old = time.time() - locks.BREAK_STALE_S - 1
        os.utime(guard, (old, old))
        with cell_lock(cell):
            assert lock.read_text() == f"{socket.gethostname()} {os.getpid()}"
        assert list(tmp_path.iterdir()) == []
    else:
        with pytest.raises(ConfigError, match="another process took its lock meanwhile; rerun the sweep"):
            with cell_lock(cell):
                pass
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.lock", "cell.lock.break"]


def _take_lock(cell: str, start, held, index: int) -> None:
    start.wait()
    try:
        with cell_lock(Path(cell)):
            held.put(index)
            time.sleep(0.02)  # hold it a moment, as a running cell does
    except ConfigError:
        pass


def test_real_processes_racing_for_a_stale_lock_never_both_hold_it(tmp_path):
    """Two processes released at once onto the same stale lock, 60 times. Before the break guard both held it in
    42 of 300 such races on the 2-core machine; the chance the old code passes 60 is below 1e-3."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    both = 0
    for n in range(60):
        cell = tmp_path / f"cell{n}"
        lock_path(cell).write_text(f"{socket.gethostname()} {dead_pid()}")
        start, held = fork.Event(), fork.Queue()
        racers = [fork.Process(target=_take_lock, args=(str(cell), start, held, i)) for i in range(2)]
        for racer in racers:
            racer.start()
        time.sleep(0.05)
        start.set()
        for racer in racers:
            racer.join(timeout=60)
        winners = []
        while not held.empty():
            winners.append(held.get())
        both += len(winners) == 2
        assert not lock_path(cell).exists()  # the winner released it
    assert both == 0


def test_the_current_folder_gets_its_lock_beside_it(tmp_path, monkeypatch):
    """`surf run CONFIG --out .` (an empty current folder): '.' has no name of its own (a ValueError traceback)."""
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    with exclusive(Path("."), "run directory .", "wait for it or stop it", "rerun"):
        assert (tmp_path / "run.lock").read_text() == f"{socket.gethostname()} {os.getpid()}"
    assert not (tmp_path / "run.lock").exists()
