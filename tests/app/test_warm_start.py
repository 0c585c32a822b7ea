"""The heavy-ball warm start end to end: tuned like the baseline, recorded, the untrained model scores exactly as
tuned heavy-ball DGD (clean and under drops), and the step-0 checkpoint makes an interrupted run resume identically."""

import json

import pytest
import torch

from surf.app import runner
from surf.app.cli import main
from surf.app.registry import load_config
from surf.training.trainer import MetaTrainer
from tests.conftest import QUICKSTART, TINY, TINY_DROPS, assert_valid, run_tiny

WARM = ["model.warm_start=heavy_ball", "constraints.kind=energy"]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A warm-started tiny run that never takes a meta-step (trainer.steps=0): the model is its classical start."""
    out = tmp_path_factory.mktemp("warm") / "run"
    assert run_tiny(out, WARM + ["trainer.steps=0"]) == 0
    return out


def test_untrained_model_scores_as_tuned_heavy_ball(untrained):
    summary = assert_valid(untrained / "summary.json")
    heavy_ball = summary["comparisons"]["dgd_momentum"]
    start = summary["training"]["warm_start"]
    assert json.loads((untrained / "warm_start.json").read_text()) == start
    assert {"step": start["step"], "momentum": start["momentum"]} == heavy_ball["hyper"]  # tuned the same way
    assert summary["per_layer"]["accuracy"] == pytest.approx(heavy_ball["per_step"]["accuracy"], abs=1e-5)
    assert summary["final"]["accuracy_relabelled"] == pytest.approx(heavy_ball["final"]["accuracy_relabelled"],
                                                                    abs=1e-5)
    training = summary["training"]
    assert training["best_step"] == 0 and training["best_validation"] == training["start_validation"]
    descent = summary["descent"]
    assert descent["declared_quantity"] == "energy"
    assert set(descent["decrease_fractions"]) == {"gradient_norm", "loss", "energy", "window"}
    assert descent["declared_decrease_fraction"] == descent["decrease_fractions"]["energy"]


def test_untrained_model_scores_as_heavy_ball_under_drops(untrained, tmp_path):
    out = tmp_path / "dropped"
    assert main(["eval", str(untrained), "-o", "eval.n_async=2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    heavy_ball = summary["comparisons"]["dgd_momentum"]["per_step"]["accuracy"]
    assert summary["eval"]["n_async"] == 2
    assert summary["per_layer"]["accuracy"] == pytest.approx(heavy_ball, abs=1e-5)


class Interrupted(Exception):
    pass


def test_step_zero_checkpoint_holds_the_start_and_resume_matches(tmp_path, monkeypatch):
    cfg = load_config(QUICKSTART, TINY + [TINY_DROPS] + WARM + ["trainer.steps=2", "trainer.checkpoint_every=10"])
    whole = runner.train(cfg, tmp_path / "whole", progress=False)

    def stop(self, *args, **kwargs):
        raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(MetaTrainer, "train", stop)
        with pytest.raises(Interrupted):
            runner.train(cfg, tmp_path / "cut", progress=False)
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)
    start = json.loads((tmp_path / "cut" / "warm_start.json").read_text())
    assert state["step"] == 0 and state["model"]["classical_start"].tolist() == pytest.approx(
        [start["step"], start["momentum"]])
    assert (state["model"]["taps"] == torch.tensor([0.0, 1.0])).all()  # plain S mixing, K = 1
    resumed = runner.train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed.final == whole.final and resumed.training == whole.training
