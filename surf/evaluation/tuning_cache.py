"""A disk cache of tuned baseline hyper-parameters, shared by the cells of a sweep.

Tuning a baseline (a grid search on the validation tasks) is about two thirds of a classification cell's
evaluation, and every cell with the same seed, data and graph tunes the same baselines on the same tasks. The cache
key is content, not config: the validation tasks' tensors and graphs, the grid, every setting the search reads and
a fingerprint of the package's source, so a hit returns exactly what the search would compute. It is active only
inside :func:`shared_tuning`: ``surf sweep`` opens it on its store's ``.tuning`` folder, and a single ``surf run``
in memory (:func:`run_tuning`: the heavy-ball warm start and the evaluation's heavy-ball baseline are the same search,
done once); elsewhere tuning runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from surf.utils.io import atomic_write

_STORE: ContextVar[Path | dict[str, dict[str, float]] | None] = ContextVar("surf_tuning_cache", default=None)
# the open store: a folder of JSON files (a sweep), a dict (one run in memory) or None (tuning always searches)
PACKAGE = Path(__file__).resolve().parents[1]


@contextmanager
def shared_tuning(directory: Path | None = None) -> Iterator[None]:
    """Within this block, tuned hyper-parameters are read from / written to ``directory`` (None: a store in memory
    that lives as long as the block)."""
    token = _STORE.set({} if directory is None else directory)
    try:
        yield
    finally:
        _STORE.reset(token)


@contextmanager
def run_tuning() -> Iterator[None]:
    """One run's scope: an in-memory :func:`shared_tuning`, unless a store is open already (a sweep's)."""
    if _STORE.get() is not None:
        yield
        return
    with shared_tuning():
        yield


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> bytes:
    """SHA-256 of every source file of the package (a code change, committed or not, is a new key)."""
    digest = hashlib.sha256()
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(source.relative_to(PACKAGE)).encode())
        digest.update(source.read_bytes())
    return digest.digest()


def _task_tensors(task: Any) -> Iterator[torch.Tensor]:
    for item in dataclasses.fields(task):
        value = getattr(task, item.name)
        if isinstance(value, torch.Tensor):
            yield value


def tuning_key(settings: dict[str, Any], tasks: list[Any], shifts: list[torch.Tensor]) -> str:
    """The content key of one search: ``settings`` (JSON-able), the tasks' tensors, their graphs and the code."""
    digest = hashlib.sha256(code_fingerprint())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for tensor in [t for task in tasks for t in _task_tensors(task)] + list(shifts):
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}{tensor.layout}".encode())
        for part in _parts(tensor):
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _parts(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What defines a tensor's content: itself, or a sparse tensor's index and value arrays (never its dense form:
    a graph of 100,000 agents would take 40 GB)."""
    if tensor.layout == torch.sparse_csr:
        return tensor.crow_indices(), tensor.col_indices(), tensor.values()
    if tensor.layout == torch.sparse_coo:
        tensor = tensor.coalesce()
        return tensor.indices(), tensor.values()
    return (tensor,)


def cached_tuning(settings: dict[str, Any], tasks: list[Any], shifts: list[torch.Tensor],
                  search: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``search()``, or its stored result for the same content inside :func:`shared_tuning`."""
    store = _STORE.get()
    if store is None:
        return search()
    key = tuning_key(settings, tasks, shifts)
    if isinstance(store, dict):
        if key not in store:
            store[key] = search()
        return dict(store[key])
    path = store / f"{key}.json"
    try:
        return {k: float(v) for k, v in json.loads(path.read_text())["hyper"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        pass  # missing or unreadable: search (and overwrite)
    hyper = search()
    store.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"settings": settings, "hyper": hyper}, indent=1, default=str))
    return hyper
