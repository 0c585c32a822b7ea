"""GLOW-Prox inpainting family: masks and disjoint pools, constraint values against hand-computed ones, keyed tasks
and training noise, pretraining, the shared trainer, and a tiny `surf run` / `surf eval` end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from surf.app.cli import main
from surf.config import from_dict
from surf.families.inpainting.data import MaskSpec, image_pools, make_masks
from surf.families.inpainting.family import InpaintingFamily
from surf.models.glow_prox import GlowProxTrajectory
from surf.training.trainer import MetaTrainer
from surf.utils.errors import ConfigError
from surf.utils.seeding import torch_generator
from tests.conftest import as_overrides, assert_valid, run_config

REPO = Path(__file__).resolve().parents[2]
TINY = {"batch_size": 8, "test_images": 12, "layers": 3, "flow_depth": 1, "flow_hidden": 8, "examples": 2,
        "classical_rho": [0.1, 0.3], "reference_iters": 20, "perturb_strengths": [0.0, 0.1],
        "ood_mask_sizes": [0.5], "ood_masks": ["pixels"], "ood_noise": [0.1]}
TRAINER = {"steps": 4, "val_every": 2, "val_tasks": 1, "checkpoint_every": 2, "lr": 1e-3}


def config(overrides=(), **inpainting):
    return from_dict({"family": "inpainting", "threads": 1, "inpainting": {**TINY, **inpainting}, "trainer": TRAINER,
                      "constraints": {"kind": "gradient_norm", "form": "ratio", "epsilon": 0.05}}, list(overrides))


def random_pools(count=(40, 12, 12), shape=(1, 8, 8)):
    gen = torch.Generator().manual_seed(0)
    splits = zip(("train", "val", "test"), count, strict=True)
    return {split: torch.rand(n, *shape, generator=gen) for split, n in splits}


def test_masks_of_every_kind():
    gen = torch.Generator().manual_seed(0)
    center = make_masks(MaskSpec("center", 0.375), 2, 8, 8, gen)
    assert center.shape == (2, 1, 8, 8) and center.sum().item() == 2 * (64 - 9)
    assert (center[0, 0, 2:5, 2:5] == 0).all() and torch.equal(center[0], center[1])
    squares = make_masks(MaskSpec("squares", 0.25, squares=2), 50, 8, 8, gen)
    missing = 64 - squares.flatten(1).sum(-1)
    assert missing.min() >= 4 and missing.max() <= 8 and not torch.equal(squares[0], squares[1])
    pixels = make_masks(MaskSpec("pixels", rate=0.3), 200, 8, 8, gen)
    assert abs(1 - pixels.mean().item() - 0.3) < 0.02


def test_digits_pools_are_disjoint_and_upsampled():
    cfg = config(["inpainting.upsample=2", "inpainting.flow_levels=2"])
    pools = image_pools(cfg)
    assert pools["train"].shape[1:] == (1, 16, 16) and sum(len(p) for p in pools.values()) == 1797
    assert 0.0 <= pools["train"].min() and pools["train"].max() <= 1.0
    rows = {split: {tuple(img.flatten().tolist()) for img in pool} for split, pool in pools.items()}
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["val"] and not rows["val"] & rows["test"]


def test_constraint_values_and_slacks_hand_computed():
    # one 2x2 image, pixel (1, 1) missing; sigma = 0.5, so grad_x F = 8 A^T (A x - y)
    fam = InpaintingFamily(config(["inpainting.sigma=0.5", "inpainting.free_layers=1",
                                   "constraints.epsilon=0.1"]), pools=random_pools())
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    y = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    xs = [y, torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]]), torch.tensor([[[[0.75, 0.5], [0.5, 0.3]]]])]
    zs = [torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])]
    traj = GlowProxTrajectory(xs, zs)
    batch = type("B", (), {"y": y, "mask": mask, "clean": torch.tensor([[[[1.0, 0.5], [0.5, 0.5]]]])})
    values = fam.per_image_values(traj, batch)  # (2, L+1, B): x-gradient norms 0, 4, sqrt(20); z norms 5, 2, 1
    assert torch.allclose(values[..., 0], torch.tensor([[0.0, 4.0, math.sqrt(20)], [5.0, 2.0, 1.0]]))
    ratio = fam.slacks(values.mean(-1))  # layer 1 free: only layer 2, x then z
    assert torch.allclose(ratio, torch.tensor([math.sqrt(20) / 4 - 0.9, 1 / 2 - 0.9]))
    assert fam.num_constraints == 2 * 2 and torch.isfinite(ratio).all()
    fam.cfg.constraints.form, fam.ic.free_layers = "difference", 0
    assert torch.allclose(fam.slacks(values.mean(-1)), torch.tensor([4.0, math.sqrt(20) - 3.6, 2 - 4.5, 1 - 1.8]))
    fam.cfg.constraints.kind = "distance"  # CII: ||x_l - clean||
    cii = fam.per_image_values(traj, batch)
    assert torch.allclose(cii[0, :, 0], torch.tensor([0.5, 0.75, 0.1025]).sqrt())
    assert torch.allclose(fam.slacks(cii.mean(-1)), torch.tensor([0.75 ** 0.5 - 0.9 * 0.5 ** 0.5,
                                                                  0.1025 ** 0.5 - 0.9 * 0.75 ** 0.5]))


def test_per_image_scope_averages_every_image_s_own_slack():
    """``constraint_scope = image``: mean_b (a_l^b / a_{l-1}^b) - (1 - eps), not the ratio of batch means; an image
    already exact (a_{l-1}^b = 0) counts as EXACT instead of dividing by zero."""
    fam = InpaintingFamily(config(["constraints.kind=distance", "inpainting.free_layers=0", "constraints.epsilon=0.1"]),
                           pools=random_pools())
    per_image = torch.tensor([[[2.0, 1.0], [1.0, 2.0], [0.5, 1.0]]])  # (R = 1, L+1 = 3, B = 2)
    assert torch.allclose(fam.scoped_slacks(per_image), torch.tensor([1.5 / 1.5 - 0.9, 0.75 / 1.5 - 0.9]))
    fam.ic.constraint_scope = "image"
    assert torch.allclose(fam.scoped_slacks(per_image), torch.tensor([(0.5 + 2.0) / 2 - 0.9, (0.5 + 0.5) / 2 - 0.9]))
    exact = torch.tensor([[[1.0], [0.0], [0.002]]])
    assert torch.allclose(fam.scoped_slacks(exact), torch.tensor([1e-3 - 0.9, 2.0 - 0.9]))


def test_robust_cii_adds_every_layer_from_a_perturbed_input():
    """``constraint_noise``: L more CII slacks, each layer re-run from ``x_{l-1} + s n`` (s <= level per image); at a
    vanishing level they are the nominal slacks (the layer's output from its own input is the next iterate)."""
    cfg = config(["constraints.kind=distance", "inpainting.free_layers=0", "inpainting.constraint_scope=image",
                  "inpainting.constraint_noise=1e-9"])
    fam = InpaintingFamily(cfg, pools=random_pools())
    model, batch = fam.build_model(), fam.task("train", 0)
    model.eval()
    assert fam.robust and fam.num_constraints == 2 * 3
    with torch.no_grad():
        terms = fam.task_terms(model, batch)
        traj = model(batch.y, batch.mask)
    assert terms.slacks.shape == (6,)
    assert torch.allclose(terms.slacks[3:], terms.slacks[:3], atol=1e-5)
    assert torch.allclose(terms.slacks[:3], fam.scoped_slacks(fam.per_image_values(traj, batch)))
    fam.ic.constraint_noise = 0.5
    with torch.no_grad():
        before, after = fam.perturbed_steps(model, traj, batch, batch.clean)
        again = fam.perturbed_steps(model, traj, batch, batch.clean)
    nominal = fam.per_image_values(traj, batch)[:, :-1]
    offsets = (before - nominal).abs().amax(-1)  # an input moved by ||s n|| <= 0.5 * ||n||: about 0.5 * 8 at most
    assert before.shape == after.shape == (1, 3, 8) and torch.equal(before, again[0])  # keyed by the task
    assert 0 < offsets.max() < 0.5 * 8 * 1.5 and ((after >= 0) & (after <= 8)).all()  # outputs clamped to [0, 1]
    assert fam.step_slacks(before, after).shape == (3, 8)
    with pytest.raises(ConfigError, match="constraint_noise"):
        config(["inpainting.constraint_noise=0.1"])  # CI cannot take it


def test_robust_gain_bounds_each_layers_response_to_a_perturbed_input():
    """``robust_form = gain``: per layer ``||x~ - x_{l-1}||`` and ``||f_l(x~) - f_l(x_{l-1})||`` (both inputs through
    the same layer), and slacks ``after / before - robust_gain`` per image (``image``) or of the batch means."""
    cfg = config(["constraints.kind=distance", "inpainting.free_layers=0", "inpainting.constraint_scope=image",
                  "inpainting.constraint_noise=0.3", "inpainting.robust_form=gain", "inpainting.robust_gain=0.2"])
    fam = InpaintingFamily(cfg, pools=random_pools())
    model, batch = fam.build_model().eval(), fam.task("train", 0)
    with torch.no_grad():
        traj = model(batch.y, batch.mask)
        before, after = fam.perturbed_steps(model, traj, batch, batch.clean)
        gen = torch_generator(cfg.seed, "inpainting", "constraint_noise", *batch.key)
        for layer in (1, 2, 3):  # re-derived: the keyed draws of x~ = x_{l-1} + s n, then both through layer l
            x = traj.x[layer - 1]
            noisy = x + 0.3 * torch.rand(len(x), 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
            response = model.layer(layer, noisy, batch.y, batch.mask)[0] - model.layer(layer, x, batch.y, batch.mask)[0]
            assert torch.allclose(before[0, layer - 1], (noisy - x).flatten(1).norm(dim=1), atol=1e-6)
            assert torch.allclose(after[0, layer - 1], response.flatten(1).norm(dim=1), atol=1e-5)
        terms = fam.task_terms(model, batch)
    assert fam.num_constraints == 6 and terms.slacks.shape == (6,)
    per_layer = (after[0].clamp_min(1e-3) / before[0].clamp_min(1e-3) - 0.2).mean(-1)
    assert torch.allclose(terms.slacks[3:], per_layer, atol=1e-5)
    # the same layer's output on the unperturbed input is the next iterate: x~ = x gives a zero response
    fam.ic.constraint_noise = 1e-12
    with torch.no_grad():
        before, after = fam.perturbed_steps(model, traj, batch, batch.clean)
    assert before.max() < 1e-9 and after.max() < 1e-5
    pair_b, pair_a = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.5, 0.2]]])
    assert torch.allclose(fam.robust_slacks(pair_b, pair_a), torch.tensor([(0.5 + 0.1) / 2 - 0.2]))
    fam.ic.constraint_scope = "batch"
    assert torch.allclose(fam.robust_slacks(pair_b, pair_a), torch.tensor([0.35 / 1.5 - 0.2]))
    distance = ["constraints.kind=distance", "inpainting.constraint_noise=0.3"]
    for bad, named in ((["inpainting.robust_form=lipschitz"], "robust_form"),
                       (["constraints.kind=distance", "inpainting.robust_form=gain"], "constraint_noise > 0"),
                       ([*distance, "inpainting.robust_form=gain", "inpainting.robust_gain=0"], "robust_gain")):
        with pytest.raises(ConfigError, match=named):
            config(bad)


def test_tasks_are_keyed_and_injection_is_the_authors_schedule():
    fam = InpaintingFamily(config(), pools=random_pools())
    a, b = fam.task("train", 3), fam.task("train", 3)
    assert torch.equal(a.clean, b.clean) and not torch.equal(a.clean, fam.task("train", 4).clean)
    assert torch.equal(a.y, a.mask * a.clean)  # noise-free observations
    model = fam.build_model().train()
    first, second = fam.task_terms(model, a), fam.task_terms(model, a)
    assert torch.equal(first.objective, second.objective) and first.slacks.shape == (fam.num_constraints,) == (4,)
    assert first.values.shape == (2, 4) and first.layer_metrics["psnr"].shape == (4,)
    noisy = InpaintingFamily(config(["inpainting.noise_injection=1.0"]), pools=fam.pools)
    hook = noisy.injection(a)
    x = torch.full_like(a.y, 0.5)
    assert torch.allclose((hook(0, x) - x).flatten(1).norm(dim=1), torch.ones(8), atol=1e-5)  # ||n/||n|| || = 1
    assert torch.allclose((hook(1, x) - x).flatten(1).norm(dim=1), torch.full((8,), 0.5), atol=1e-5)
    assert torch.equal(hook(2, x), x) and torch.equal(hook(3, x), x)  # neither x_{L-1} nor x_L
    assert not torch.equal(noisy.task_terms(model, a).objective, first.objective)
    assert torch.equal(noisy.task_terms(model.eval(), a).objective, fam.task_terms(model, a).objective)


def test_training_goes_through_the_shared_trainer_and_pretraining_lowers_the_nll():
    fam = InpaintingFamily(config(["inpainting.pretrain_steps=15", "inpainting.pretrain_lr=3e-3"]),
                           pools=random_pools())
    rows = []
    trainer = MetaTrainer(fam, log=rows.append)
    stage = fam.pretraining(trainer.model)
    before = stage.loss(0).item()
    trainer.train(None, progress=False)
    assert rows[0]["pretrain_steps"] == 15 and rows[0]["pretrain_loss"] < before
    assert trainer.step == 4 and trainer.duals.value.shape == (4,) and "val_psnr" in rows[-1]
    assert fam.pretraining(trainer.model) is not None and InpaintingFamily(config(), fam.pools).pretraining(
        trainer.model) is None


def _run(tmp_path: Path, name: str, extra=()) -> int:
    overrides = as_overrides({"inpainting": TINY, "trainer": TRAINER}) + list(extra)
    return run_config(REPO / "simulations" / "inpainting.yaml", tmp_path / name, overrides)


def test_tiny_inpainting_run_end_to_end(tmp_path, capsys):
    assert _run(tmp_path, "a") == 0
    run = tmp_path / "a"
    summary = assert_valid(run / "summary.json")
    assert summary["family"] == "inpainting" and summary["method"] == "constrained_glow_prox"
    assert set(summary["comparisons"]) == {"standard_glow_prox", "dct_ista", "dct_fista"}
    curves = [summary["per_layer"], *(c["per_step"] for c in summary["comparisons"].values())]
    assert all(len(c["psnr"]) == 4 and c["psnr"][0] == summary["reference"]["observed_psnr"] for c in curves)
    descent = summary["descent"]
    assert all(0.0 <= descent[k] <= 1.0 for k in ("distance_nonincrease_fraction", "objective_nonincrease_fraction",
                                                  "constraint_satisfied_fraction"))
    assert summary["robustness"]["layers"]["strengths"] == [0.0, 0.1]
    assert {row["shift"] for row in summary["ood"]} == {"center_size", "pixels", "noise"}
    assert summary["comparisons"]["dct_fista"]["hyper"]["rho"] in (0.1, 0.3)
    assert (run / "twin" / "checkpoints" / "best.pt").exists()
    assert {p.name for p in (run / "plots").glob("*.png")} >= {"per_layer.png", "robustness.png", "image_grid.png"}
    out = capsys.readouterr().out
    assert "PSNR (dB)" in out and "SSIM" in out and "standard_glow_prox" in out
    assert main(["eval", str(run), "--out", str(tmp_path / "e"), "-o", "inpainting.mask=pixels"]) == 0
    again = assert_valid(tmp_path / "e" / "summary.json")
    assert again["kind"] == "eval" and again["comparisons"].keys() == summary["comparisons"].keys()
    assert (tmp_path / "e" / "plots" / "image_grid.png").exists()
    assert main(["eval", str(run), "-o", "inpainting.upsample=2", "--out", str(tmp_path / "x")]) == 2
    assert "(keep the trained inpainting.upsample=1)" in capsys.readouterr().err
    for command in (["deploy", str(run), "--runtime", "flower"], ["partition", str(run), "--nodes", "2"],
                    ["stress", str(run), "--scenario", "fig4_async"]):  # agents on a graph only
        capsys.readouterr()
        assert main([*command, "--out", str(tmp_path / "x")]) == 2
        assert f"surf {command[0]} runs the decentralized family" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    assert _run(tmp_path, "b", ["constraints.kind=none"]) == 0
    alone = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert alone["method"] == "standard_glow_prox" and set(alone["comparisons"]) == {"dct_ista", "dct_fista"}
    assert alone["comparisons"]["dct_fista"] == summary["comparisons"]["dct_fista"]  # same seed, same test images
    twin = summary["comparisons"]["standard_glow_prox"]["per_step"]["psnr"]
    assert alone["per_layer"]["psnr"] == pytest.approx(twin, abs=1e-9)  # the twin is that run


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    with pytest.raises(ConfigError, match="did you mean"):
        config(["inpainting.layer=3"])
    with pytest.raises(ConfigError, match="free_layers"):
        config(["inpainting.free_layers=3"])
    with pytest.raises(ConfigError, match="needs inpainting.path"):
        config(["inpainting.images=npz"])
    with pytest.raises(ConfigError, match="ood_masks"):
        config(['inpainting.ood_masks=["holes"]'])
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 8), dtype=np.uint8))
    assert _run(tmp_path, "x", ["inpainting.images=npz", f"inpainting.path={bad}"]) == 2
    odd = tmp_path / "odd.npz"
    np.savez(odd, images=np.zeros((30, 9, 9), dtype=np.uint8))
    assert _run(tmp_path, "y", ["inpainting.images=npz", f"inpainting.path={odd}"]) == 2
    err = capsys.readouterr().err
    assert "(N, H, W)" in err and "divisible by 2^flow_levels" in err
    assert _run(tmp_path, "z", ["inpainting.flow_levels=1000000000"]) == 2  # 2**levels as text was a ValueError
    assert "divisible by 2^flow_levels = 2^1000000000" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "xyz")
