"""Independent jobs as Ray tasks with declared resources: the cells of ``surf sweep`` and the chunks of ``surf
stress``, on every core of this machine (a local Ray instance) or on a cluster (``--address``), unchanged.

A job is a module-level function and its arguments (pickled by reference, so workers run the same source tree,
``surf.runtime.ray_cluster``). Every task sets the job's torch threads (a worker process is reused by later tasks, so
nothing is inherited from them), works in the driver's directory when it exists there (relative data paths), and
can send the job's stdout and stderr, file descriptors included, to a log file. A job's exception comes back as one
line (its traceback goes to the log); a task lost with its worker is retried by Ray (``retries``) and then reported
the same way. ``ray`` is imported only when a pool is used."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surf.runtime.ray_cluster import cluster_cpus, cluster_gpus, connect, node_cpus
from surf.utils.errors import WorkerError, one_line


@dataclass(frozen=True)
class Resources:
    """What one task declares to Ray and the torch threads it runs with."""

    num_cpus: int
    num_gpus: int
    threads: int


def resources(threads: int, device: str, workers: int) -> Resources:
    """A task's share: ``threads`` CPUs (0 = torch's default, all cores: a 1/``workers`` share of the largest node,
    so ``workers`` such tasks fit on it), at most one node's CPUs; one GPU when the device is ``cuda``, or ``auto``
    on a cluster that has GPUs."""
    largest = node_cpus()
    threads = threads if threads > 0 else max(1, largest // max(workers, 1))
    gpu = device == "cuda" or (device == "auto" and cluster_gpus() > 0)
    return Resources(num_cpus=min(threads, largest), num_gpus=int(gpu), threads=threads)


@contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2) appended to ``log`` meanwhile."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _task(fn: Callable, threads: int, log: str | None, cwd: str, *args: Any) -> tuple[Any, str | None, str]:
    """The body of every task: (the job's value, None, node) or (None, its error in one line, node)."""
    import ray
    import torch

    torch.set_num_threads(threads)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    node = ray.get_runtime_context().get_node_id()
    with _output_to(Path(log)) if log else nullcontext():
        try:
            return fn(*args), None, node
        except Exception as exc:  # a failing job is reported, it never stops the driver
            traceback.print_exc()  # into the log (or the worker's own Ray log)
            return None, one_line(exc), node


_REMOTE: Any = None


def _remote() -> Any:
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(_task)
    return _REMOTE


@dataclass
class Outcome:
    """A finished task: its key, the job's value or its error (one line), and the node it ran on."""

    key: Any
    value: Any = None
    error: str | None = None
    node: str | None = None


class TaskPool:
    """Jobs as Ray tasks, at most ``limit`` submitted at once; outcomes as they finish, in any order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[Any, Any] = {}  # ObjectRef -> key

    def __len__(self) -> int:
        return len(self._running)

    def full(self) -> bool:
        return len(self._running) >= self.limit

    def submit(self, key: Any, size: Resources, fn: Callable, *args: Any, log: Path | None = None,
               node: str | None = None, retries: int = 2) -> None:
        """Run ``fn(*args)`` as a task with ``size`` (on ``node`` only, when given); ``retries`` restarts if its
        worker dies."""
        options = {"num_cpus": size.num_cpus, "num_gpus": size.num_gpus, "max_retries": retries}
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        ref = _remote().options(**options).remote(fn, size.threads, str(log) if log else None, os.getcwd(), *args)
        self._running[ref] = key

    def next(self) -> Outcome:
        """Wait for the next task to finish (or be given up by Ray)."""
        import ray

        done, _ = ray.wait(list(self._running), num_returns=1)
        key = self._running.pop(done[0])
        try:
            return Outcome(key, *ray.get(done[0]))
        except ray.exceptions.RayError as exc:  # lost: its worker or node died more often than retries
            return Outcome(key, error=f"lost by Ray: {one_line(exc)}")


def _import(module: str) -> None:
    importlib.import_module(module)


def pool_size(workers: int | None) -> int:
    """How many tasks run at once: ``workers``, or every CPU of the cluster when not given."""
    return workers or cluster_cpus()


class RayMapper:
    """``fn(shared, item)`` for every item as Ray tasks (``shared`` sent once), results in completion order.

    The mapper of ``surf.evaluation.stress.StressBench.run``: ``workers`` tasks at once, each with ``threads`` torch
    threads (0: a share of the node) on ``device``. ``preload``: a module every worker imports right away, while the
    caller prepares the work (a fresh worker spends seconds importing torch and surf)."""

    def __init__(self, workers: int | None, address: str | None, threads: int, device: str,
                 preload: str | None = None) -> None:
        connect(address, workers or 1, use_gpu=device == "cuda")
        self.workers = pool_size(workers)
        self.size = resources(threads, device, self.workers)
        self._preloading = TaskPool(self.workers)
        for _ in range(self.workers if preload else 0):
            self._preloading.submit(None, self.size, _import, preload)

    def __call__(self, fn: Callable, shared: Any, items: Iterable[Any]) -> Iterator[Any]:
        import ray

        shared_ref = ray.put(shared)
        pool, pending = TaskPool(self.workers), list(items)
        while pending or len(pool):
            while pending and not pool.full():
                pool.submit(None, self.size, fn, shared_ref, pending.pop(0))
            outcome = pool.next()
            if outcome.error is not None:
                raise WorkerError(f"a worker task failed: {outcome.error}")
            yield outcome.value
