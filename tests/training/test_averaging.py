"""The meta-parameters' moving average (``trainer.ema``) and the cosine learning-rate schedule: the recurrences
by hand, validation and selection on the average, and an interrupted run resuming to the same state."""

import math

import pytest
import torch

from surf.config import from_dict
from surf.families.classifier.family import ClassifierFamily
from surf.training.averaging import ParameterAverage, cosine_lr
from surf.training.trainer import MetaTrainer
from surf.utils.errors import ConfigError
from tests.conftest import TINY

AVERAGED = ["trainer.ema=0.9", "trainer.lr_schedule=cosine", "trainer.lr=0.05"]


def _trainer(extra: list[str]) -> MetaTrainer:
    return MetaTrainer(ClassifierFamily(from_dict({"name": "t"}, TINY + extra)))


def test_cosine_schedule_values():
    assert cosine_lr(0.1, 0, 10) == 0.1
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)
    assert cosine_lr(0.1, 10, 10) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr(0.1, 2, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.2)))


def test_average_recurrence_and_buffers_copied():
    model = torch.nn.BatchNorm1d(3)  # weight, bias: parameters; running stats: buffers
    average = ParameterAverage(model, 0.75)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
        model.running_mean.fill_(2.0)
    average.update(model)
    assert torch.allclose(average.state_dict()["weight"], 0.75 * start + 0.25 * (start + 4.0))
    assert torch.equal(average.state_dict()["running_mean"], model.running_mean)
    with pytest.raises(ValueError):
        ParameterAverage(model, 1.0)


def test_training_steps_follow_the_schedule_and_the_average_tracks_the_iterates(monkeypatch):
    trainer = _trainer(AVERAGED)
    lrs, iterates = [], []
    step = torch.optim.Adam.step

    def recording_step(optimizer, *args, **kwargs):
        lrs.append(optimizer.param_groups[0]["lr"])
        out = step(optimizer, *args, **kwargs)
        iterates.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(progress=False)
    assert lrs == pytest.approx([cosine_lr(0.05, t, 4) for t in range(4)])
    expected = start["taps"]
    for state in iterates:
        expected = 0.9 * expected + 0.1 * state["taps"]
    assert torch.allclose(trainer.average.state_dict()["taps"], expected, atol=1e-6)
    assert not torch.allclose(expected, iterates[-1]["taps"])  # the average is not the iterate


def test_validation_sees_the_average_and_training_keeps_the_iterate(monkeypatch):
    trainer = _trainer(AVERAGED + ["trainer.steps=0"])
    trainer.train(progress=False)
    with torch.no_grad():
        trainer.model.taps.add_(1.0)  # the iterate moved; the average did not
    iterate = trainer.model.taps.detach().clone()
    seen = []
    monkeypatch.setattr(trainer, "validate", lambda: seen.append(trainer.model.taps.detach().clone())
                        or {"val_loss": -1.0, "val_accuracy": 1.0})
    trainer.step = 2
    trainer._validate_and_select()
    assert torch.equal(seen[0], trainer.average.state_dict()["taps"]) and not torch.equal(seen[0], iterate)
    assert torch.equal(trainer.model.taps, iterate)  # restored after validation
    assert torch.equal(trainer.best_state["taps"], seen[0]) and trainer.best_step == 2


def test_an_interrupted_averaged_run_resumes_to_the_same_state(tmp_path):
    whole = _trainer(AVERAGED)
    whole.train(progress=False)
    first = _trainer(AVERAGED)  # the same schedule, stopped after step 2 as by SIGTERM

    def stop_after_step_two(point):
        if point == "step" and first.step == 2:
            first.interrupts.requested = 15

    first._pause = stop_after_step_two
    with pytest.raises(KeyboardInterrupt):
        first.train(tmp_path, progress=False)
    resumed = _trainer(AVERAGED)
    resumed.load(tmp_path / "last.pt")
    resumed.train(progress=False)
    for name in ("model", "average", "best_state"):
        a, b = whole.state()[name], resumed.state()[name]
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("override", ["trainer.ema=1.0", "trainer.ema=0", "trainer.lr_schedule=linear"])
def test_bad_values_are_config_errors(override):
    with pytest.raises(ConfigError):
        from_dict({"name": "t"}, TINY + [override])
