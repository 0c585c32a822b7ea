"""Jobs as Ray tasks: declared resources, torch threads, output to a log, errors as one line; `surf stress` split over
2 Ray workers equals the single-process bench exactly."""

from __future__ import annotations

import json
import os

import pytest
import torch

from surf.app.cli import main
from surf.runtime import ray_tasks
from surf.runtime.ray_tasks import Resources, TaskPool, resources
from surf.utils.errors import DataError


@pytest.mark.parametrize(("threads", "device", "workers", "gpus", "expected"), [
    (1, "cpu", 2, 0, Resources(1, 0, 1)),
    (0, "cpu", 2, 0, Resources(8, 0, 8)),  # all cores: a fair share of the 16-core node
    (0, "auto", 32, 0, Resources(1, 0, 1)),
    (32, "cpu", 1, 0, Resources(16, 0, 32)),  # never more than a node has (the task would wait forever)
    (1, "cuda", 2, 0, Resources(1, 1, 1)),
    (1, "auto", 2, 4, Resources(1, 1, 1)),
])
def test_resources_follow_threads_and_device(monkeypatch, threads, device, workers, gpus, expected):
    monkeypatch.setattr(ray_tasks, "node_cpus", lambda: 16)
    monkeypatch.setattr(ray_tasks, "cluster_gpus", lambda: gpus)
    assert resources(threads, device, workers) == expected


def job(text: str, fail: bool) -> tuple[int, str]:
    """A job for a worker: prints, may fail, returns its torch threads and working directory."""
    print(text)
    if fail:
        raise DataError(f"no data for {text}")
    return torch.get_num_threads(), os.getcwd()


def test_pool_runs_jobs_with_their_threads_log_and_errors(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pool = TaskPool(limit=2)
    pool.submit("good", Resources(1, 0, 2), job, "hello", False, log=tmp_path / "good.log")
    pool.submit("bad", Resources(1, 0, 1), job, "world", True, log=tmp_path / "logs" / "bad.log")
    assert pool.full() and len(pool) == 2
    outcomes = {o.key: o for o in (pool.next(), pool.next())}
    assert len(pool) == 0
    assert outcomes["good"].value == (2, str(tmp_path)) and outcomes["good"].error is None
    assert outcomes["bad"].value is None and outcomes["bad"].error == "no data for world"
    assert (tmp_path / "good.log").read_text() == "hello\n"
    log = (tmp_path / "logs" / "bad.log").read_text()
    assert log.startswith("world\n") and "Traceback" in log and "DataError: no data for world" in log


def test_stress_split_over_two_workers_equals_one_process(ray_local, tiny_run, tmp_path):
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        args = ["stress", str(tiny_run), "--scenario", "fig4_async", "--severity", "0", "2", "4", "--repeats", "3",
                "--out", str(out), "--quiet", "--workers", str(workers)]
        assert main(args) == 0
        results[workers] = json.loads((out / "stress.json").read_text())["fig4_async"]
        results[workers].pop("seconds")
    assert results[2] == results[1]  # exactly: every float of every method and severity
    assert len(set(results[1]["methods"][tiny_run.name]["mean"])) > 1  # the drops changed something
