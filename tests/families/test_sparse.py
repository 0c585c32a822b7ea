"""LISTA sparse-coding family: LASSO solvers (KKT), CI/CII values on hand-computed cases, models, shared trainer."""

import json
import math
from pathlib import Path

import pytest
import torch

from surf.app.cli import main
from surf.app.registry import config_from_dict
from surf.config import from_dict
from surf.constrained.constraints import descent_constraints
from surf.families.sparse.data import gaussian_dictionary, perturb_dictionary, sparse_codes
from surf.families.sparse.family import SparseCodingFamily
from surf.families.sparse.measures import ci_values, cii_values, nmse_db, objective_nonincrease_fraction
from surf.models.lista import ALISTA, LISTA, analytic_weight
from surf.models.perturbation import injection_scales
from surf.problems.lasso import (
    fista,
    ista,
    kkt_violation,
    objective,
    prox_gradient_residual,
    soft_threshold,
    solve_lasso,
    step_size,
)
from surf.utils.errors import ConfigError
from tests.conftest import as_overrides, assert_valid, run_config

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "family": "sparse_coding", "threads": 1,
    "sparse_coding": {"signal_dim": 8, "atoms": 16, "train_signals": 64, "val_signals": 32, "test_signals": 32,
                      "ood_signals": 16, "batch_size": 16, "layers": 3, "solver_iters": 2000,
                      "perturb_strengths": [0.0, 0.1], "ood_sparsity": [0.3], "ood_noise": [0.1],
                      "ood_dictionary": [0.1]},
    "trainer": {"steps": 4, "val_every": 2, "val_tasks": 2, "checkpoint_every": 2, "lr": 1e-3},
    "constraints": {"kind": "gradient_norm", "form": "ratio", "epsilon": 0.05, "dual_lr": 0.5},
}


def small_problem(count=6, n=8, m=16, seed=0):
    dictionary = gaussian_dictionary(n, m, seed).double()
    gen = torch.Generator().manual_seed(seed)
    y = sparse_codes(count, m, 0.25, gen).double() @ dictionary.T + 0.05 * torch.randn(count, n, generator=gen).double()
    return y, dictionary


def test_ista_reaches_lasso_optimum_kkt():
    y, dictionary = small_problem()
    rho = 0.1
    x = ista(y, dictionary, rho, 20000)[-1]
    correlation = dictionary.T @ (y - x @ dictionary.T).T  # (m, B): D_i^T (y - D x)
    active = x.T != 0
    assert active.any() and (~active).any()
    assert torch.allclose(correlation[active], rho * torch.sign(x.T[active]), atol=1e-6)
    assert (correlation[~active].abs() <= rho + 1e-6).all()
    assert kkt_violation(x, y, dictionary, rho).max() < 1e-6
    assert kkt_violation(solve_lasso(y, dictionary, rho, tol=1e-9), y, dictionary, rho).max() < 1e-6


def test_kkt_violation_detects_a_non_optimum():
    y, dictionary = small_problem()
    assert kkt_violation(torch.zeros(y.shape[0], dictionary.shape[1], dtype=torch.float64), y, dictionary,
                         1e-3).max() > 1e-2


def test_fista_converges_faster_than_ista():
    y, dictionary = small_problem(count=16, n=16, m=48)
    rho = 0.05
    optimum = objective(solve_lasso(y, dictionary, rho, tol=1e-10), y, dictionary, rho)
    gap_ista = (objective(ista(y, dictionary, rho, 60)[-1], y, dictionary, rho) - optimum).mean()
    gap_fista = (objective(fista(y, dictionary, rho, 60)[-1], y, dictionary, rho) - optimum).mean()
    assert 0 <= gap_fista < 0.5 * gap_ista


def test_step_size_uses_spectral_norm():
    dictionary = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert step_size(dictionary) == pytest.approx(1.0 / 9.0)  # Frobenius would give 1/10


def test_ci_cii_values_hand_computed():
    # D = I, rho = 1, eta = 1, y = (3, 0): grad g(x) = x - y, x* = soft(y, 1) = (2, 0)
    dictionary, rho, eta = torch.eye(2), 1.0, 1.0
    y = torch.tensor([[3.0, 0.0], [3.0, 0.0]])
    x_star = soft_threshold(y, rho)
    assert torch.equal(x_star[0], torch.tensor([2.0, 0.0]))
    x0 = torch.zeros(2, 2)
    x1 = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    # prox residual: x0 -> x0 - soft(y, 1) = (-2, 0), norm 2 for both signals
    # x1[0] = (1, 1): x - grad = (3, 0), soft = (2, 0), residual (-1, 1), norm sqrt(2); x1[1] = x*: residual 0
    ci = ci_values([x0, x1], y, dictionary, rho, eta, "prox_residual")
    assert torch.allclose(ci, torch.tensor([2.0, math.sqrt(2) / 2]))
    # least-squares gradient x - y: x0 -> (-3, 0), norm 3; x1 -> (-2, 1), (-1, 0): norms sqrt(5), 1
    ls = ci_values([x0, x1], y, dictionary, rho, eta, "ls_gradient")
    assert torch.allclose(ls, torch.tensor([3.0, (math.sqrt(5) + 1) / 2]))
    # CII: ||x - x*||: x0 -> 2, 2; x1 -> sqrt(2), 0
    cii = cii_values([x0, x1], x_star)
    assert torch.allclose(cii, torch.tensor([2.0, math.sqrt(2) / 2]))
    assert torch.allclose(prox_gradient_residual(x_star, y, dictionary, rho, eta), torch.zeros(2, 2))
    # the shared slacks: ratio a1/a0 - (1 - eps); difference a1 - (1 - eps) a0
    assert descent_constraints(cii, "ratio", 0.1).item() == pytest.approx(math.sqrt(2) / 4 - 0.9)
    assert descent_constraints(cii, "difference", 0.1).item() == pytest.approx(math.sqrt(2) / 2 - 1.8)


def test_nmse_and_descent_fraction():
    x_star = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    traj = [torch.zeros(2, 2), 0.9 * x_star]
    assert torch.allclose(nmse_db(traj, x_star), torch.tensor([0.0, 10 * math.log10(0.01)]))
    assert objective_nonincrease_fraction(torch.tensor([[2.0, 1.0], [1.0, 3.0], [0.5, 3.0]])) == 0.75


def test_untrained_lista_is_ista_and_alista_weight_is_normalized():
    y, dictionary = small_problem()
    y, dictionary = y.float(), dictionary.float()
    lista = LISTA(dictionary, 0.1, 5)
    for a, b in zip(lista(y), ista(y, dictionary, 0.1, 5), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    weight = analytic_weight(dictionary)
    assert torch.allclose(torch.diagonal(weight.T @ dictionary), torch.ones(dictionary.shape[1]), atol=1e-4)
    alista = ALISTA(dictionary, 0.1, 4)
    assert len(alista(y)) == 5 and sum(p.numel() for p in alista.parameters()) == 8


def test_perturbed_dictionary_keeps_unit_atoms():
    dictionary = gaussian_dictionary(8, 16, 0)
    moved = perturb_dictionary(dictionary, 0.1, 0)
    assert torch.allclose(moved.norm(dim=0), torch.ones(16)) and not torch.allclose(moved, dictionary)


def test_digits_dictionary_is_learned_on_meta_train_images_only():
    cfg = from_dict(TINY, ["sparse_coding.dictionary=digits", "sparse_coding.signal_dim=64",
                           "sparse_coding.atoms=80", "sparse_coding.dictionary_iters=1"])
    family = SparseCodingFamily(cfg)
    images = family.source.images
    assert family.dictionary.shape == (64, 80)
    assert torch.allclose(family.dictionary.norm(dim=0), torch.ones(80), atol=1e-5)
    train = {tuple(row.tolist()) for row in images["train"]}
    assert not train & {tuple(row.tolist()) for row in images["test"]}  # disjoint image pools
    task = family.task("test", 0)
    assert task.y.shape == (16, 64) and kkt_violation(task.x_star.double(), task.y.double(),
                                                      family.dictionary.double(), cfg.sparse_coding.rho).max() < 1e-4


def test_tasks_are_keyed_and_noise_injection_off_is_deterministic():
    family = SparseCodingFamily(from_dict(TINY))
    assert torch.equal(family.task("train", 3).y, family.task("train", 3).y)
    assert not torch.equal(family.task("train", 3).y, family.task("train", 4).y)
    model = family.build_model().train()
    task = family.task("train", 0)
    first, second = family.task_terms(model, task), family.task_terms(model, task)
    assert torch.equal(first.objective, second.objective) and torch.equal(first.values, second.values)
    assert first.slacks.shape == (3,) and first.layer_metrics["nmse_db"].shape == (4,)
    noisy = SparseCodingFamily(from_dict(TINY, ["sparse_coding.noise_injection=0.5"]), source=family.source)
    a, b = noisy.task_terms(model, task), noisy.task_terms(model, task)
    assert torch.equal(a.objective, b.objective)  # keyed noise: same task, same draws
    assert not torch.equal(a.objective, first.objective)
    assert torch.equal(noisy.task_terms(model.eval(), task).objective, family.task_terms(model, task).objective)
    assert injection_scales(1.0, 2.0, 3) == [0.0, 1.0, 0.25, 0.0]
    assert injection_scales(1.0, 1.0, 3, first=0) == [1.0, 0.5, 0.0, 0.0]


def test_sparse_training_goes_through_the_shared_meta_trainer(monkeypatch):
    import surf.training.trainer

    calls = []
    original = surf.training.trainer.MetaTrainer.primal_dual_step

    def counted(self, tasks):
        calls.append(len(tasks))
        return original(self, tasks)

    monkeypatch.setattr(surf.training.trainer.MetaTrainer, "primal_dual_step", counted)
    family = SparseCodingFamily(from_dict(TINY))
    trainer = surf.training.trainer.MetaTrainer(family)
    trainer.train(None, progress=False)
    assert calls == [1] * 4 and trainer.duals.value.shape == (3,)
    # no second training loop: only surf/training/trainer.py steps an optimizer or calls backward
    layers = ("families", "models", "evaluation", "app")
    for path in [p for layer in layers for p in (REPO / "surf" / layer).rglob("*.py")]:
        text = path.read_text()
        assert ".backward(" not in text and "optimizer.step" not in text and "torch.optim" not in text, path


def _run(tmp_path: Path, name: str, extra: list[str] = ()) -> int:
    return run_config(REPO / "simulations" / "lista.yaml", tmp_path / name, as_overrides(TINY) + list(extra))


def test_tiny_sparse_run_end_to_end(tmp_path, capsys):
    assert _run(tmp_path, "a") == 0
    run = tmp_path / "a"
    summary = assert_valid(run / "summary.json")
    assert summary["family"] == "sparse_coding" and summary["method"] == "constrained_lista"
    assert set(summary["comparisons"]) == {"standard_lista", "ista", "fista"}
    curves = [summary["per_layer"], *(c["per_step"] for c in summary["comparisons"].values())]
    assert all(len(rep["nmse_db"]) == 4 and rep["nmse_db"][0] == 0.0 for rep in curves)
    assert 0.0 <= summary["descent"]["objective_nonincrease_fraction"] <= 1.0
    assert summary["robustness"]["layers"]["strengths"] == [0.0, 0.1]
    assert {row["shift"] for row in summary["ood"]} == {"sparsity", "noise", "dictionary"}
    assert (run / "twin" / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    assert {p.name for p in (run / "plots").glob("*.png")} >= {"per_layer.png", "robustness.png", "training.png"}
    out = capsys.readouterr().out
    assert "NMSE (dB)" in out and "standard_lista" in out
    assert main(["eval", str(run), "--out", str(tmp_path / "e")]) == 0  # re-evaluation, with the stored twin
    assert assert_valid(tmp_path / "e" / "summary.json")["comparisons"].keys() == summary["comparisons"].keys()
    capsys.readouterr()
    assert main(["eval", str(run), "-o", "sparse_coding.layers=5", "--out", str(tmp_path / "e5")]) == 2
    assert "(keep the trained sparse_coding.layers=3)" in capsys.readouterr().err  # not the classifier's advice
    assert main(["eval", str(run / "twin"), "--out", str(tmp_path / "et")]) == 2  # was: "restore its config.yaml"
    assert f"{run / 'twin'} is the standard-unrolling twin of {run}: evaluate that run" in capsys.readouterr().err
    assert _run(tmp_path, "b", ["constraints.kind=none", "sparse_coding.perturb_strengths=[]"]) == 0
    assert not (tmp_path / "b" / "plots" / "robustness.png").exists()  # no strengths: no empty plot
    alone = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert alone["method"] == "standard_lista" and set(alone["comparisons"]) == {"ista", "fista"}
    assert alone["comparisons"]["ista"] == summary["comparisons"]["ista"]  # same seed, same test problems


def test_sparse_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="did you mean"):
        from_dict(TINY, ["sparse_coding.layer=3"])
    with pytest.raises(ConfigError, match="signal_dim=64"):
        from_dict(TINY, ["sparse_coding.dictionary=digits"])
    with pytest.raises(ConfigError, match="not one of"):
        config_from_dict(TINY, ["family=lasso"])
    with pytest.raises(ConfigError, match="overcomplete"):
        from_dict(TINY, ["sparse_coding.atoms=4"])
