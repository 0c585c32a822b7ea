"""`surf sweep --workers N` / `--address`: cells as Ray tasks give exactly what one process gives, a killed driver's
sweep resumes to the same results, a failing cell is reported with a re-run command while the other cells finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surf.app.cells import log_path
from surf.app.sweep import Cell, Sweep
from surf.app.sweep_run import run_sweep
from surf.utils.errors import ConfigError
from surf.utils.faults import PAUSE_AT, PAUSE_FILE
from surf.utils.locks import lock_path
from tests.app.test_sweep import write_sweep
from tests.conftest import REPO

# 4 cells: a short and a long trained cell (the long one is still training when the short one has finished), each
# re-evaluated with one agent dropped per layer
FOUR_CELLS = {"include": [{"constraints.kind": "gradient_norm"}, {"constraints.kind": "none", "trainer.steps": 100}],
              "eval_matrix": {"eval.n_async": [1]}}
MISSING = "/nonexistent/missing.npz"


def snapshot(out: Path, store: Path) -> dict[str, str]:
    """``sweep.json`` and every cell's ``summary.json``, the store's own path replaced by STORE."""
    files = {"sweep.json": (out / "sweep.json").read_text()}
    files.update({str(p.relative_to(store)): p.read_text() for p in sorted(store.rglob("summary.json"))})
    return {name: text.replace(str(store), "STORE") for name, text in files.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 4-cell sweep run as today: one process, one cell after the other."""
    tmp = tmp_path_factory.mktemp("serial")
    path = write_sweep(tmp, **FOUR_CELLS)
    assert run_sweep(path, tmp / "out", tmp / "store", progress=False) == 0
    assert list((tmp / "store" / ".tuning").glob("*.json"))  # the cells shared their tuned baselines
    return path, snapshot(tmp / "out", tmp / "store")


def test_two_workers_give_the_same_sweep_as_one_process(reference, ray_local, tmp_path):
    path, expected = reference
    assert run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False, workers=2) == 0
    assert len(expected) == 5  # sweep.json + 4 summaries
    assert snapshot(tmp_path / "out", tmp_path / "store") == expected
    short, long = Sweep(path, tmp_path / "out", tmp_path / "store").cells
    for cell in (short, long, short.evals[0], long.evals[0]):
        assert log_path(cell.path).exists() and not lock_path(cell.path).exists()
    assert f"surf: run directory {long.path}" in log_path(long.path).read_text()  # the cell's output


def _wait_for(condition, proc: subprocess.Popen, what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the sweep exited before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sweep_whose_driver_is_killed_resumes_with_identical_results(reference, ray_local, tmp_path):
    path, expected = reference
    out, store = tmp_path / "out", tmp_path / "store"
    sweep = Sweep(path, out, store)
    short, long = sweep.cells
    cmd = [sys.executable, "-m", "surf.app.cli", "sweep", str(path), "--out", str(out), "--store", str(store),
           "--workers", "2", "--quiet"]
    paused = tmp_path / "paused"  # the long cell waits at step 10 (past the short cell's 4) until it is killed
    env = {**os.environ, PAUSE_AT: "step:10", PAUSE_FILE: str(paused)}
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own process group: Ray's processes too
    try:
        _wait_for(lambda: short.done and paused.exists(), driver, "the long cell's step 10")
        holder = int(lock_path(long.path).read_text().split()[1])  # the Ray worker training the long cell
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 60
        while not _dead(holder) and time.monotonic() < deadline:  # Ray's workers die with their driver
            time.sleep(0.2)
        assert _dead(holder)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # what is left of the killed driver's Ray instance
        except ProcessLookupError:
            pass
    # killed mid-training (checkpoint of step 8); its lock stays if Ray SIGKILLed the worker and is gone if Ray's
    # SIGTERM let it clean up: either way the same command must take the cell over and finish it identically
    assert long.state == "resume" and not long.done
    assert run_sweep(path, out, store, progress=False, workers=2) == 0  # the same command again
    assert snapshot(out, store) == expected
    assert not lock_path(long.path).exists()


def test_sweep_whose_worker_is_killed_retries_the_cell_from_its_checkpoint(reference, ray_local, tmp_path):
    path, expected = reference
    out, store = tmp_path / "out", tmp_path / "store"
    long = Sweep(path, out, store).cells[1]
    cmd = [sys.executable, "-m", "surf.app.cli", "sweep", str(path), "--out", str(out), "--store", str(store),
           "--address", ray_local, "--workers", "2", "--quiet"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: long.state == "resume", driver, "the long cell's first checkpoint")
    worker = int(lock_path(long.path).read_text().split()[1])
    os.kill(worker, signal.SIGKILL)  # the Ray worker training the long cell; Ray runs the task again
    assert driver.wait(timeout=300) == 0, driver.stdout.read()[-2000:]
    assert snapshot(out, store) == expected
    assert log_path(long.path).read_text().count(f"surf: run directory {long.path}") == 2  # two attempts


def test_eval_cells_follow_their_model_when_the_driver_cannot_see_it(ray_local, tmp_path, monkeypatch):
    """Per-node stores: the driver does not see a cell another node trained, so its eval cells are pinned to that
    node (here the only one); the trained cell's own evaluation then finds it finished there."""
    import ray

    from surf.runtime.ray_tasks import TaskPool

    path = write_sweep(tmp_path, eval_matrix={"eval.n_async": [0, 1]})  # its own evaluation and one eval cell
    submitted, submit = [], TaskPool.submit

    def recording(self, key, *args, node=None, **kwargs):
        submitted.append((key.label, node))
        return submit(self, key, *args, node=node, **kwargs)

    monkeypatch.setattr(TaskPool, "submit", recording)
    monkeypatch.setattr(Cell, "done", property(lambda cell: False))  # nothing is visible from this driver
    assert run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False, workers=2) == 0
    here = ray.get_runtime_context().get_node_id()
    assert submitted == [("base", None), ("base / eval.n_async-0", here), ("base / eval.n_async-1", here)]
    trained = Sweep(path, tmp_path / "out", tmp_path / "store").cells[0]
    assert trained.evals[0].path == trained.path and trained.evals[1].state == "finished"


def _failing_sweep(tmp_path: Path) -> Path:
    """A good cell and a cell whose data file is missing (valid config, fails when it runs), each with an eval."""
    return write_sweep(tmp_path, include=[{"seed": 0}, {"data.source": "npz", "data.path": MISSING}],
                       eval_matrix={"eval.n_async": [1]})


def test_failing_cell_is_reported_and_the_others_finish_on_a_cluster(ray_local, tmp_path):
    path = _failing_sweep(tmp_path)
    out, store = tmp_path / "out", tmp_path / "store"
    cmd = [sys.executable, "-m", "surf.app.cli", "sweep", str(path), "--out", str(out), "--store", str(store),
           "--address", ray_local, "--workers", "2", "--quiet"]  # joins the running instance as a cluster
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    good, bad = Sweep(path, out, store).cells
    assert good.done and all(e.done for e in good.evals)
    assert not bad.done and not bad.evals[0].done
    report = proc.stdout[proc.stdout.index("surf sweep: 2 of 4 cell(s) did not finish"):]
    assert f"data file '{MISSING}' not found" in report and str(log_path(bad.path)) in report
    assert "not run: its trained cell failed" in report
    assert f"re-run: surf sweep {path} --out {out} --store {store} --workers 2 --address {ray_local}" in report
    assert "DataError" in log_path(bad.path).read_text()  # the traceback went to the cell's log
    states = {c["name"]: c["state"] for c in json.loads((out / "sweep.json").read_text())["cells"]}
    assert states == {good.name: "finished", bad.name: "todo"}


def test_failing_cell_in_one_process_is_reported_and_the_others_finish(tmp_path, capsys):
    path = _failing_sweep(tmp_path)
    assert run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False) == 1
    good, bad = Sweep(path, tmp_path / "out", tmp_path / "store").cells
    assert good.done and good.evals[0].done and not bad.done
    out = capsys.readouterr().out
    assert "2 of 4 cell(s) did not finish" in out and "not run: its trained cell did not finish" in out
    assert f"re-run: surf sweep {path} --out {tmp_path / 'out'} --store {tmp_path / 'store'}\n" in out


def test_ray_cells_refuse_ray_train_cells(tmp_path):
    path = write_sweep(tmp_path, set={"trainer.workers": 2, "trainer.val_tasks": 2})
    with pytest.raises(ConfigError, match="run this sweep with --workers 1"):
        run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False, workers=2)
