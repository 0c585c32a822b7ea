"""``surf sweep``: run a sweep's unfinished cells (``surf.app.sweep``), one after the other in this process
(``--workers 1``, the default) or as Ray tasks (``--workers N``: a local Ray instance on every core; ``--address``: an
existing cluster, unchanged).

With Ray, each trained cell is a task that declares its CPUs (the config's ``threads``) and GPU (``device``)
(``surf.runtime.ray_tasks.resources``); its eval cells are submitted once it has finished. A task's stdout and stderr
go to ``<cell>.log`` beside the cell, and one progress bar counts the cells done, running and failed. Whatever
dies — a cell, a worker, a node or this driver — every cell on disk is finished or will be run again
(``surf.app.cells``): rerunning the same command skips the finished cells and resumes or restarts the others.

A failing cell never stops the sweep: the other cells run, and the end lists each failure with its error, its log
and a one-line command that re-runs it; the exit code is then 1.
"""

from __future__ import annotations

import shlex
import sys
import traceback
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from surf.app.cells import log_path, run_cell
from surf.app.sweep import Cell, Sweep
from surf.utils.errors import ConfigError, SurfError, one_line


@dataclass
class Failure:
    """A cell that did not finish: why (one line) and where its output went."""

    cell: Cell
    error: str
    log: Path | None = None


def run_sweep(path: str | Path, out: str | Path | None = None, store: str | Path | None = None,
              overrides: list[str] | None = None, dry_run: bool = False, progress: bool = True,
              workers: int | None = None, address: str | None = None) -> int:
    """Resolve every cell (errors before anything runs), then run the unfinished ones; 1 if any cell failed."""
    sweep = Sweep(path, out, store, overrides)
    cells = sweep.all_cells()
    print(f"surf sweep {sweep.name}: {len(sweep.cells)} trained cell(s), {len(cells) - len(sweep.cells)} eval "
          f"cell(s); {sum(c.done for c in cells)} finished; index {sweep.out / 'sweep.json'}")
    if dry_run:
        for cell in cells:
            kind = "train" if cell.parent is None else f"  eval of {cell.parent.name}:"
            print(f"  [{cell.state:8s}] {kind} {cell.name}  ->  {cell.path}")
        return 0
    sweep.write_index()
    if address is not None or (workers or 1) > 1:
        failures = _run_on_ray(sweep, cells, workers, address, progress)
    else:
        failures = _run_here(sweep, cells, progress)
    if failures:
        command = ["surf", "sweep", str(path), *(f for o in overrides or [] for f in ("-o", o)), "--out",
                   str(sweep.out), "--store", str(sweep.store), *(["--workers", str(workers)] if workers else []),
                   *(["--address", address] if address else [])]
        print(report(failures, len(cells), shlex.join(command)), end="")
        return 1
    print(f"surf sweep {sweep.name}: done; aggregate with `surf report {sweep.out}`")
    return 0


def _run_here(sweep: Sweep, cells: list[Cell], progress: bool) -> list[Failure]:
    """Every cell in order, in this process, with its own progress bars."""
    failures: list[Failure] = []
    for number, cell in enumerate(cells, 1):
        kind = "train" if cell.parent is None else "eval"
        print(f"surf sweep [{number}/{len(cells)}] {kind} {cell.label}: {cell.state}", flush=True)
        if cell.parent is not None and not cell.parent.done:
            failures.append(Failure(cell, "not run: its trained cell did not finish"))
            continue
        try:
            cell.run(progress)
        except Exception as exc:  # reported at the end; the other cells still run
            if not isinstance(exc, SurfError):
                traceback.print_exc()
            failures.append(Failure(cell, one_line(exc)))
            print(f"surf sweep: {cell.label} failed: {failures[-1].error}", file=sys.stderr, flush=True)
        sweep.write_index()
    return failures


def _run_on_ray(sweep: Sweep, cells: list[Cell], workers: int | None, address: str | None,
                progress: bool) -> list[Failure]:
    """Cells as Ray tasks, at most ``workers`` at once (default with ``address``: the cluster's CPUs)."""
    import torch
    from tqdm import tqdm

    from surf.runtime.ray_tasks import TaskPool, connect, pool_size, resources

    for cell in sweep.cells:
        if cell.cfg.trainer.workers > 1:
            raise ConfigError(f"cell {cell.name} trains on {cell.cfg.trainer.workers} Ray Train workers "
                              "(trainer.workers); run this sweep with --workers 1")
    devices = {c.cfg.run_device for c in cells}
    connect(address, workers or 1, use_gpu="cuda" in devices or ("auto" in devices and torch.cuda.is_available()))
    pool = TaskPool(pool_size(workers))
    ready = deque((c, None) for c in cells if not c.done and (c.parent is None or c.parent.done))
    failures: list[Failure] = []
    bar = tqdm(total=len(cells), initial=sum(c.done for c in cells), desc=f"sweep {sweep.name}", unit="cell",
               disable=not progress)
    while ready or len(pool):
        while ready and not pool.full():
            cell, node = ready.popleft()
            trained_from = cell.parent.path if cell.parent else None
            size = resources(cell.cfg.threads, cell.cfg.run_device, pool.limit)
            cfg = replace(cell.cfg, threads=size.threads)  # its share of the node, whatever its size would ask
            pool.submit(cell, size, run_cell, cfg, cell.path, trained_from, log=log_path(cell.path), node=node)
        bar.set_postfix_str(f"running {len(pool)}, failed {len(failures)}")
        outcome = pool.next()
        cell = outcome.key
        if outcome.error is None:
            bar.update(1)
            bar.write(f"surf sweep: finished {cell.label}")
            # its eval cells, on the node that has the model unless this driver sees it (a shared store)
            node = None if cell.done else outcome.node
            for evaluation in cell.evals:
                if evaluation.done:
                    bar.update(1)  # the trained cell's own evaluation
                else:
                    ready.append((evaluation, node))
        else:
            failures.append(Failure(cell, outcome.error, log_path(cell.path)))
            failures += [Failure(e, "not run: its trained cell failed") for e in cell.evals if not e.done]
            bar.write(f"surf sweep: {cell.label} failed: {outcome.error} (log {log_path(cell.path)})")
        sweep.write_index()
    bar.set_postfix_str(f"running 0, failed {len(failures)}")
    bar.close()
    return failures


def report(failures: list[Failure], total: int, sweep_command: str) -> str:
    """The end of a sweep with failures: each cell, its error and log, and a command that re-runs it."""
    lines = [f"surf sweep: {len(failures)} of {total} cell(s) did not finish:"]
    for failure in failures:
        cell = failure.cell
        lines.append(f"  {cell.label}: {failure.error}" + (f" (log {failure.log})" if failure.log else ""))
        if cell.parent is None and cell.state == "resume":  # this cell alone, from its last checkpoint
            rerun = shlex.join(["surf", "run", str(cell.path / "config.yaml"), "--out", str(cell.path), "--resume"])
        else:
            rerun = sweep_command  # skips every finished cell
        lines.append(f"    re-run: {rerun}")
    return "\n".join(lines) + "\n"
