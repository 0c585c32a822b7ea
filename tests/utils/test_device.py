"""The CUDA path against the CPU, end to end: the same tasks and initial parameters, the same meta-step up to float
rounding for every model family, and a whole ``surf run`` and ``surf eval``.

On a machine with a GPU the device is CUDA (``benchmarks/gpu_check.sh`` runs this file on a lent GPU machine).
Without one the CPU takes the GPU's place: the checks then compare the CPU with itself (the same seed must give the
same numbers twice in one process), and they keep running in CI, so they cannot rot before the next GPU is at hand.
``SURF_TEST_DEVICE`` names another device.
"""

import json
import os

import pytest
import torch

from surf.app.cli import main
from surf.app.registry import build_family, load_config
from surf.training.trainer import MetaTrainer
from tests.conftest import QUICKSTART, REPO, TINY, TINY_DROPS, as_overrides, assert_valid, run_config
from tests.families.test_inpainting import TINY as TINY_INPAINTING
from tests.families.test_sparse import TINY as TINY_SPARSE

DEVICE = os.environ.get("SURF_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")

# the round-1 default, on which the paper variant runs (no step features, no warm start); dropout off: its masks
# come from each device's own generator
PAPER = ["model.variant=paper", "model.layers=10", "model.hops=2", "model.warm_start=none", "model.safeguard=none",
         "model.features=[]", "constraints.kind=gradient_norm", "constraints.gradient_on=batch",
         "trainer.scenario=null", "trainer.scenario_severity=null", "num_agents=20", "model.dropout=0.0"]
SPARSE = [item for item in as_overrides(TINY_SPARSE) if not item.startswith(("family=", "threads="))]
CASES = {  # name: (config, overrides, relative tolerance of the step's values and gradients)
    "quickstart": (QUICKSTART, [], 1e-4),
    "quickstart-recompute": (QUICKSTART, ["model.recompute=true"], 1e-4),
    "paper-variant": (QUICKSTART, PAPER, 1e-4),
    "lista": (REPO / "simulations" / "lista.yaml", SPARSE, 1e-4),
    # Glow's convolutions run on cuDNN, which may round through TF32 on this GPU generation
    "inpainting": (REPO / "simulations" / "inpainting.yaml", as_overrides({"inpainting": TINY_INPAINTING}), 1e-2),
}


def _family(config, overrides: list[str], device: str):
    return build_family(load_config(config, [*overrides, "trainer.val_tasks=1", f"device={device}"]))


def _meta_step(config, overrides: list[str], device: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """One meta-step's logged row and the meta-gradient of every parameter (on the CPU)."""
    trainer = MetaTrainer(_family(config, overrides, device))
    row = trainer.primal_dual_step(trainer.train_tasks(0))
    return row, {name: p.grad.cpu() for name, p in trainer.model.named_parameters() if p.grad is not None}


def test_tasks_and_initial_parameters_are_the_cpus():
    cpu, device = _family(QUICKSTART, [], "cpu"), _family(QUICKSTART, [], DEVICE)
    for split, index in (("train", 0), ("val", 1), ("test", 2)):
        expected, task = cpu.task(split, index, relabel=True), device.task(split, index, relabel=True)
        assert task.x_train.device.type == DEVICE
        for name in ("x_train", "y_train", "x_test", "y_test"):
            assert torch.equal(getattr(task, name).cpu(), getattr(expected, name)), (split, name)
    expected, model = MetaTrainer(cpu).model.state_dict(), MetaTrainer(device).model.state_dict()
    assert expected.keys() == model.keys()
    assert all(torch.equal(model[key].cpu(), expected[key]) for key in expected)


@pytest.mark.parametrize("case", CASES)
def test_a_meta_step_on_the_device_is_the_cpus(case):
    config, overrides, tolerance = CASES[case]
    expected_row, expected_grads = _meta_step(config, overrides, "cpu")
    row, grads = _meta_step(config, overrides, DEVICE)
    assert row.keys() == expected_row.keys()
    for key, value in expected_row.items():
        torch.testing.assert_close(torch.tensor(row[key], dtype=torch.float64),
                                   torch.tensor(value, dtype=torch.float64), rtol=tolerance, atol=1e-6, msg=key)
    assert grads.keys() == expected_grads.keys() and grads
    for name, grad in expected_grads.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(grads[name], grad, rtol=tolerance, atol=tolerance * scale + 1e-12, msg=name)


def _rows(run, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if kind in row]


def test_surf_run_and_eval_on_the_device(tmp_path, capsys):
    overrides = [*TINY, TINY_DROPS]
    assert run_config(QUICKSTART, tmp_path / "cpu", [*overrides, "device=cpu"]) == 0
    assert run_config(QUICKSTART, tmp_path / "device", [*overrides, f"device={DEVICE}"]) == 0
    summary = json.loads((tmp_path / "device" / "summary.json").read_text())
    assert_valid(summary)
    for kind in ("loss", "val_loss"):  # every meta-step's and validation's held-out loss
        expected, rows = _rows(tmp_path / "cpu", kind), _rows(tmp_path / "device", kind)
        assert [row["step"] for row in rows] == [row["step"] for row in expected] and rows
        for row, reference in zip(rows, expected, strict=True):
            assert row[kind] == pytest.approx(reference[kind], rel=1e-3), (kind, row["step"])
    # the CPU's model evaluated on both: the same per-layer losses up to rounding
    for name, device in (("reference", "cpu"), ("device", DEVICE)):
        assert main(["eval", str(tmp_path / "cpu"), "--out", str(tmp_path / f"eval-{name}"),
                     "-o", f"device={device}"]) == 0
    capsys.readouterr()
    expected, summary = (json.loads((tmp_path / f"eval-{name}" / "summary.json").read_text())
                         for name in ("reference", "device"))
    assert_valid(summary)
    assert summary["per_layer"]["loss"] == pytest.approx(expected["per_layer"]["loss"], rel=1e-4)
    assert summary["per_layer"]["grad_norm"] == pytest.approx(expected["per_layer"]["grad_norm"], rel=1e-3)


@pytest.mark.parametrize("case", ["quickstart", "lista", "inpainting"])
def test_every_family_runs_on_trainer_device_over_device(case):
    """``trainer.device`` names the run's device over the top-level ``device``, in every family (LISTA and GLOW-Prox
    read only ``device``, so ``-o trainer.device=cuda`` ran on the CPU without a word)."""
    config, overrides, _ = CASES[case]
    for top, trainer, expected in (("cuda", "cpu", "cpu"), ("cpu", DEVICE, DEVICE)):
        cfg = load_config(config, [*overrides, f"device={top}", f"trainer.device={trainer}"])
        assert cfg.run_device == trainer and build_family(cfg).device.type == expected
