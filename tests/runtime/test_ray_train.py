"""Data-parallel meta-training on Ray Train: 2 workers x 1 task == 1 process x 2 tasks; recovery from a dead worker."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from surf import config as config_mod
from surf.families.classifier.family import ClassifierFamily
from surf.training.rundir import RunDir
from surf.training.trainer import MetaTrainer
from surf.utils.errors import ConfigError

pytest.importorskip("ray.train.torch")

from surf.app.cli import main
from surf.app.runner import warm_start
from tests.conftest import TINY_DROPS

QUICKSTART = Path(__file__).resolve().parents[2] / "simulations" / "quickstart.yaml"
TINY = ["num_agents=6", "device=cpu", "topology.name=ring", "model.layers=2", "model.hops=1", "model.hidden=4",
        "data.train_per_agent=20", "data.test_per_agent=5", "trainer.steps=6", "trainer.val_every=3",
        "trainer.val_tasks=2", "trainer.checkpoint_every=2", "eval.test_tasks=2", "eval.dgd_steps=[0.1,1.0]",
        "eval.momentum_grid=[0.5]", "eval.long_factor=2", TINY_DROPS,
        "constraints.epsilon=0.3"]  # a loss decrease of 30 % per layer binds: the dual step must move lambda


def overrides(workers: int, tasks_per_step: int) -> list[str]:
    return TINY + [f"trainer.workers={workers}", f"trainer.tasks_per_step={tasks_per_step}"]


def cli_run(path: Path, workers: int, tasks_per_step: int) -> RunDir:
    args = ["run", str(QUICKSTART), "--out", str(path), "--quiet"]
    for item in overrides(workers, tasks_per_step):
        args += ["-o", item]
    assert main(args) == 0
    return RunDir(path)


@pytest.fixture(scope="module")
def ray_session(ray_local):
    return ray_local  # the session's local Ray instance (tests/conftest.py)


@pytest.fixture(scope="module")
def distributed(ray_session, tmp_path_factory):
    """`surf run` with 2 workers x 1 task per step."""
    return cli_run(tmp_path_factory.mktemp("two_workers") / "run", workers=2, tasks_per_step=1)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """`surf run` in one process with 2 tasks per step."""
    return cli_run(tmp_path_factory.mktemp("one_worker") / "run", workers=1, tasks_per_step=2)


def last_state(run: RunDir) -> dict:
    return torch.load(run.checkpoints / "last.pt", weights_only=False)


def assert_same_state(a: dict, b: dict, tol: float, params_tol: float | None = None) -> None:
    assert a["step"] == b["step"]
    for name, value in a["model"].items():
        assert torch.allclose(value, b["model"][name], atol=params_tol or tol, rtol=0), name
    assert torch.allclose(a["duals"]["value"], b["duals"]["value"], atol=tol, rtol=0)


def test_two_workers_equal_one_process_on_both_tasks(distributed, single):
    a, b = last_state(single), last_state(distributed)
    assert a["step"] == 6 and a["duals"]["value"].abs().sum() > 0  # the dual step really ran
    # One process unrolls its 2 tasks side by side (one batched pass), each worker its own task: the same mean
    # gradient up to float rounding, which Adam turns into up to a full step (lr = 0.01) on a parameter whose
    # gradient hovers at 0, so parameters agree to 2 lr; lambda (task-averaged slacks, no Adam) to 1e-6.
    assert_same_state(a, b, tol=1e-6, params_tol=0.02)  # lambda equal across workers: train_with_ray checks
    best_a, best_b = (torch.load(r.checkpoints / "best.pt", weights_only=False) for r in (single, distributed))
    assert best_a["step"] == best_b["step"]
    summary = json.loads(distributed.summary.read_text())
    assert summary["training"]["steps"] == 6
    assert summary["training"]["duals"] == pytest.approx(a["duals"]["value"].tolist(), abs=1e-5)


def test_run_directory_matches_single_process(distributed, single):
    rows1, rows2 = ([json.loads(line) for line in r.metrics.read_text().splitlines()] for r in (single, distributed))
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2] == list(range(7))
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r1.keys() == r2.keys()
        for key in ("loss", "val_loss"):
            assert r1.get(key) == pytest.approx(r2.get(key), abs=1e-5)
    assert {p.name for p in distributed.plots.glob("*.png")} == {p.name for p in single.plots.glob("*.png")}


def test_resume_continues_a_distributed_run(ray_session, distributed, tmp_path):
    """`surf run --resume` with 2 workers from the Ray checkpoint at step 4 ends where the uninterrupted run ended."""
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(distributed.path, copy)
    states = [torch.load(p, weights_only=False) for p in sorted((copy / "ray").glob("*/checkpoint_*/state.pt"))]
    torch.save(next(state for state in states if state["step"] == 4), copy / "checkpoints" / "last.pt")
    args = ["run", str(QUICKSTART), "--out", str(copy), "--quiet", "--resume"]
    for item in overrides(workers=2, tasks_per_step=1):
        args += ["-o", item]
    assert main(args) == 0
    assert_same_state(last_state(distributed), last_state(RunDir(copy)), tol=0.0)
    assert [json.loads(line)["step"] for line in RunDir(copy).metrics.read_text().splitlines()] == list(range(7))


def run_api(path: Path, fail_at_step: int | None = None) -> tuple[RunDir, dict]:
    from surf.runtime.ray_train import train_with_ray

    cfg = config_mod.load(QUICKSTART, overrides(workers=2, tasks_per_step=1))
    run = RunDir(path)
    run.prepare(cfg, resume=False)
    family = ClassifierFamily(cfg)
    trainer = MetaTrainer(family)
    warm_start(family, trainer, run, restored=False)  # as `surf run` does: tuned heavy-ball start, step-0 checkpoint
    return run, train_with_ray(trainer, run, fail_at_step=fail_at_step)


def test_killed_worker_resumes_from_checkpoint(ray_session, distributed, tmp_path):
    run, report = run_api(tmp_path / "killed", fail_at_step=3)
    assert (run.path / "injected_fault").exists()  # the worker really died once ...
    assert report["restored_step"] == 2  # ... and the new worker group continued from the checkpoint at step 2
    assert_same_state(last_state(distributed), last_state(run), tol=0.0)  # same final state as uninterrupted
    assert [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()] == list(range(7))
    assert report["lambda_divergence"] == 0.0 and report["params_divergence"] == 0.0
    assert 0.0 < report["reduce_seconds"] < report["step_seconds"]  # the all-reduces' share of the steps


def test_worker_count_is_validated():
    with pytest.raises(ConfigError, match="trainer.workers"):
        config_mod.from_dict({}, ["trainer.workers=0"])
    with pytest.raises(ConfigError, match="val_tasks"):
        config_mod.from_dict({}, ["trainer.workers=4", "trainer.val_tasks=2"])
    with pytest.raises(ConfigError, match="trainer.device"):
        config_mod.from_dict({}, ["trainer.device=tpu"])


def test_cuda_without_gpu_is_one_line_error(tmp_path, capsys, monkeypatch):
    from surf.runtime.ray_train import check_scaling

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["run", str(QUICKSTART), "--out", str(tmp_path / "run"), "-o", "trainer.workers=2",
            "-o", "trainer.device=cuda"]
    assert main(args) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "run").exists()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="needs 4 GPUs"):
        check_scaling(4, torch.device("cuda"))


def test_ray_is_imported_only_for_workers():
    code = ("import sys, surf.app.cli, surf.app.sweep_run, surf.evaluation.stress, surf.training.trainer, "
            "surf.runtime.ray_train, surf.runtime.ray_tasks; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=QUICKSTART.parent.parent)
    assert out.stdout.strip() == "False"
