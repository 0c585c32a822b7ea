"""Model selection on validation tasks: by loss or accuracy, step 0 included, recorded and checkpointed."""

import pytest
import torch

from surf.config import from_dict
from surf.families.classifier.family import ClassifierFamily
from surf.training.trainer import MetaTrainer
from tests.conftest import TINY

ROWS = [  # (step, val_loss, val_accuracy): the start, then a lower loss, then a higher accuracy
    (0, 1.0, 0.50),
    (2, 0.8, 0.60),
    (4, 0.9, 0.70),
]


def _trainer(select_by, monkeypatch):
    cfg = from_dict({"name": "t"}, TINY + ["trainer.steps=0", f"trainer.select_by={select_by}"])
    trainer = MetaTrainer(ClassifierFamily(cfg))
    rows = iter(ROWS)

    def validate():
        step, loss, accuracy = next(rows)
        assert step == trainer.step
        return {"val_loss": loss, "val_accuracy": accuracy, "val_layer_accuracy": [0.1, accuracy]}

    monkeypatch.setattr(trainer, "validate", validate)
    trainer.train(progress=False)  # trainer.steps = 0: only the step-0 validation
    for step in (2, 4):
        trainer.step = step
        trainer._validate_and_select()
    return trainer


@pytest.mark.parametrize("select_by, best_step", [("loss", 2), ("accuracy", 4)])
def test_selection_criterion_and_records(select_by, best_step, monkeypatch):
    trainer = _trainer(select_by, monkeypatch)
    assert trainer.best_step == best_step
    _, loss, accuracy = ROWS[best_step // 2]
    assert trainer.best_validation == {"val_loss": loss, "val_accuracy": accuracy}
    assert trainer.start_validation == {"val_loss": 1.0, "val_accuracy": 0.5}


def test_step_zero_is_kept_when_training_never_beats_it(monkeypatch):
    cfg = from_dict({"name": "t"}, TINY + ["trainer.steps=0"])
    trainer = MetaTrainer(ClassifierFamily(cfg))
    values = iter([0.5, 0.7, 0.9])
    monkeypatch.setattr(trainer, "validate", lambda: {"val_loss": next(values), "val_accuracy": 0.5})
    trainer.train(progress=False)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for step in (2, 4):
        trainer.step = step
        with torch.no_grad():
            trainer.model.taps.add_(1.0)  # training moved the model; validation got worse
        trainer._validate_and_select()
    assert trainer.best_step == 0 and all((trainer.best_state[k] == v).all() for k, v in start.items())


def test_records_survive_a_checkpoint_and_old_checkpoints_load(monkeypatch, tmp_path):
    trainer = _trainer("loss", monkeypatch)
    trainer.save(tmp_path / "last.pt")
    cfg = from_dict({"name": "t"}, TINY + ["trainer.steps=0"])
    again = MetaTrainer(ClassifierFamily(cfg))
    again.load(tmp_path / "last.pt")
    assert (again.best_step, again.best_validation, again.start_validation) == \
        (trainer.best_step, trainer.best_validation, trainer.start_validation)
    old = {k: v for k, v in trainer.state().items() if k not in ("best_step", "best_validation", "start_validation")}
    again.load_state(old)
    assert again.best_step is None and again.best_validation == {}
