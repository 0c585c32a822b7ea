"""Data-parallel meta-training on Ray Train: 2 workers x 1 task == 1 process x 2 tasks; recovery from a dead worker."""

import json

import pytest
import torch

from surf import config as config_mod
from surf.experiment import Experiment
from surf.rundir import RunDir
from surf.trainer import MetaTrainer

pytest.importorskip("ray.train.torch")

TINY = ["num_agents=6", "threads=1", "device=cpu", "topology.name=ring", "model.layers=2", "model.hops=1",
        "data.train_per_agent=20", "data.test_per_agent=5", "constraints.dual_lr=0.5", "trainer.steps=6",
        "trainer.val_every=3", "trainer.val_tasks=2", "trainer.checkpoint_every=2"]


def tiny(workers: int, tasks_per_step: int) -> config_mod.Config:
    return config_mod.from_dict({"name": "tiny"}, TINY + [f"trainer.workers={workers}",
                                                          f"trainer.tasks_per_step={tasks_per_step}"])


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from surf.runtime.ray_train import start_ray

    start_ray(2, use_gpu=False)
    yield
    ray.shutdown()


def run_distributed(path, fail_at_step=None):
    from surf.runtime.ray_train import train_with_ray

    cfg = tiny(workers=2, tasks_per_step=1)
    run = RunDir(path)
    run.prepare(cfg, resume=False)
    trainer = MetaTrainer(Experiment(cfg))
    report = train_with_ray(trainer, run, fail_at_step=fail_at_step)
    return run, trainer, report


@pytest.fixture(scope="module")
def distributed(ray_session, tmp_path_factory):
    return run_distributed(tmp_path_factory.mktemp("two_workers"))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    cfg = tiny(workers=1, tasks_per_step=2)
    run = RunDir(tmp_path_factory.mktemp("one_worker"))
    run.prepare(cfg, resume=False)
    trainer = MetaTrainer(Experiment(cfg), log=run.append_metrics)
    trainer.train(run.checkpoints, progress=False)
    return run, trainer


def last_state(run: RunDir) -> dict:
    return torch.load(run.checkpoints / "last.pt", weights_only=False)


def assert_same_state(a: dict, b: dict, tol: float) -> None:
    assert a["step"] == b["step"]
    for name, value in a["model"].items():
        assert torch.allclose(value, b["model"][name], atol=tol, rtol=0), name
    assert torch.allclose(a["duals"]["value"], b["duals"]["value"], atol=tol, rtol=0)


def test_two_workers_equal_one_process_on_both_tasks(distributed, single):
    (run2, trainer2, report), (run1, trainer1) = distributed, single
    a, b = last_state(run1), last_state(run2)
    assert a["step"] == 6 and a["duals"]["value"].abs().sum() > 0  # the dual step really ran
    assert_same_state(a, b, tol=1e-5)
    assert report["lambda_divergence"] == 0.0 and report["params_divergence"] == 0.0  # identical on both workers
    for name, value in trainer1.model.state_dict().items():  # the best model, loaded on return
        assert torch.allclose(value, trainer2.model.state_dict()[name], atol=1e-5, rtol=0)


def test_run_directory_matches_single_process(distributed, single):
    (run2, _, _), (run1, _) = distributed, single
    rows1, rows2 = ([json.loads(line) for line in r.metrics.read_text().splitlines()] for r in (run1, run2))
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2] == list(range(7))
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r1.keys() == r2.keys()
        assert r1["loss" if "loss" in r1 else "val_loss"] == pytest.approx(r2["loss" if "loss" in r2 else "val_loss"],
                                                                          abs=1e-5)
    assert (run2.checkpoints / "best.pt").exists()


def test_killed_worker_resumes_from_checkpoint(ray_session, distributed, tmp_path):
    run, _, report = run_distributed(tmp_path / "killed", fail_at_step=3)
    assert (run.path / "injected_fault").exists()  # the worker really died once ...
    assert report["restored_step"] == 2  # ... and the new worker group continued from the checkpoint at step 2
    assert_same_state(last_state(distributed[0]), last_state(run), tol=0.0)  # same final state as uninterrupted
    assert [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()] == list(range(7))
    assert report["lambda_divergence"] == 0.0


def test_worker_count_is_validated():
    with pytest.raises(config_mod.ConfigError, match="trainer.workers"):
        config_mod.from_dict({}, ["trainer.workers=0"])
    with pytest.raises(config_mod.ConfigError, match="val_tasks"):
        config_mod.from_dict({}, ["trainer.workers=4", "trainer.val_tasks=2"])
    with pytest.raises(config_mod.ConfigError, match="trainer.device"):
        config_mod.from_dict({}, ["trainer.device=tpu"])
