"""Meta-test report of the sparse-coding family: learned networks vs ISTA/FISTA at equal iterations.

Every method runs on the same meta-test LASSO problems from ``x_0 = 0`` with ``L`` layers / iterations:

* in distribution: per-layer NMSE (dB, vs the LASSO optimum x*), mean objective ``F(x_l)``, the share of
  (signal, layer) pairs where the objective did not increase, and the CI/CII values;
* robustness: Gaussian noise of strength ``delta`` added to every intermediate output (layers 1..L-1; std
  ``delta * rms(x*)`` per coordinate) or to the input (std ``delta * rms(y)``), the same draws for every method;
  NMSE against the clean optimum;
* out of distribution: test problems with another sparsity (synthetic dictionaries), measurement-noise level or a
  perturbed dictionary ``D'`` (ISTA/FISTA are given ``D'``; the learned networks keep what they learned on ``D``).

A ``twin`` (standard LISTA meta-trained with ``constraints.kind=none``, all else equal; ``surf.app.runner`` trains it
when ``sparse_coding.twin``) is reported side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from surf.evaluation.robustness import strength_sweep
from surf.evaluation.summary import Comparison, Descent, Shift, Summary
from surf.families.sparse.data import SignalPool
from surf.families.sparse.family import SparseCodingFamily, gaussian_perturbation
from surf.families.sparse.measures import (
    ci_values,
    cii_values,
    layer_objectives,
    nmse_db,
    objective_nonincrease_fraction,
)
from surf.problems.lasso import Perturb, fista, ista, step_size
from surf.utils.seeding import torch_generator

Solver = Callable[[torch.Tensor, torch.Tensor, Perturb | None], list[torch.Tensor]]  # (y, D, perturb) -> [x_0..x_L]


def method_name(family: SparseCodingFamily, constrained: bool) -> str:
    return f"{'constrained' if constrained else 'standard'}_{family.sc.variant}"


def solvers(family: SparseCodingFamily, models: dict[str, nn.Module]) -> dict[str, Solver]:
    """The learned networks (dictionary-blind) and ISTA/FISTA with the same number of iterations."""
    layers, rho = family.sc.layers, family.sc.rho
    out: dict[str, Solver] = {name: (lambda y, d, p, m=model: m(y, p)) for name, model in models.items()}
    out["ista"] = lambda y, d, p: ista(y, d, rho, layers, p)
    out["fista"] = lambda y, d, p: fista(y, d, rho, layers, p)
    return out


def layer_stds(delta: float, scale: float, layers: int) -> list[float]:
    """Test perturbation std ``delta * scale`` after layers 1..L-1 (neither x_0 nor the output is perturbed)."""
    return [0.0] + [delta * scale] * (layers - 1) + [0.0]


def trajectory_report(family: SparseCodingFamily, trajectory: list[torch.Tensor], pool: SignalPool,
                      y: torch.Tensor) -> dict:
    """Per-layer NMSE, objective, descent share and CI/CII values of one method on one pool."""
    dictionary, sc = pool.dictionary.to(family.device), family.sc
    x_star = pool.x_star.to(family.device)
    objectives = layer_objectives(trajectory, y, dictionary, sc.rho)
    return {
        "nmse_db": nmse_db(trajectory, x_star).tolist(),
        "objective": objectives.mean(-1).tolist(),
        "objective_nonincrease_fraction": objective_nonincrease_fraction(objectives),
        "ci": ci_values(trajectory, y, dictionary, sc.rho, step_size(dictionary), sc.ci_measure).tolist(),
        "cii": cii_values(trajectory, x_star).tolist(),
    }


def run_all(family: SparseCodingFamily, methods: dict[str, Solver], pool: SignalPool, input_delta: float = 0.0,
            layer_delta: float = 0.0, key: tuple = ()) -> dict[str, dict]:
    """Every method on ``pool``, optionally with input / intermediate-output perturbations (same draws for all)."""
    y = pool.y.to(family.device)
    dictionary = pool.dictionary.to(family.device)
    if input_delta > 0:
        noise = torch.randn(y.shape, generator=_generator(family, "input", input_delta, *key))
        y = y + input_delta * pool.y.pow(2).mean().sqrt() * noise.to(y.device)
    perturb = None
    if layer_delta > 0:
        scale = pool.x_star.pow(2).mean().sqrt().item()
        perturb = gaussian_perturbation(family.cfg.seed, ("test", layer_delta, *key),
                                        layer_stds(layer_delta, scale, family.sc.layers))
    return {name: trajectory_report(family, solve(y, dictionary, perturb), pool, pool.y.to(family.device))
            for name, solve in methods.items()}


def _generator(family: SparseCodingFamily, *key: object) -> torch.Generator:
    return torch_generator(family.cfg.seed, "sparse", "test_perturb", *key)


def ood_shifts(family: SparseCodingFamily) -> list[tuple[str, float, dict]]:
    """(kind, value, pool keyword arguments) for every configured distribution shift."""
    sc = family.sc
    shifts = [("noise", v, {"noise": v}) for v in sc.ood_noise]
    shifts += [("dictionary", v, {"dictionary_shift": v}) for v in sc.ood_dictionary]
    if sc.dictionary == "gaussian":  # digits signals are images: their sparsity is not a knob
        shifts = [("sparsity", v, {"sparsity": v}) for v in sc.ood_sparsity] + shifts
    return shifts


@torch.no_grad()
def evaluate(family: SparseCodingFamily, model: nn.Module, twin: nn.Module | None = None) -> Summary:
    """The sparse-coding meta-test report (see the module docstring), with the standard-LISTA ``twin`` if given."""
    cfg, sc = family.cfg, family.sc
    constrained = cfg.constraints.kind != "none"
    name = method_name(family, constrained)
    models = {name: model}
    if twin is not None:
        models[method_name(family, False)] = twin
    for m in models.values():
        m.eval()
    methods = solvers(family, models)
    test = family.source.pool("test")

    def pick(rep: dict) -> dict:
        return {"final_nmse_db": rep["nmse_db"][-1], "nmse_db": rep["nmse_db"],
                "objective_nonincrease_fraction": rep["objective_nonincrease_fraction"]}

    robustness = {kind: strength_sweep(sc.perturb_strengths,
                                       lambda d, a=argument: run_all(family, methods, test, **{a: d}), pick)
                  for kind, argument in (("layers", "layer_delta"), ("input", "input_delta"))}
    ood = []
    for kind, value, kwargs in ood_shifts(family):
        reports = run_all(family, methods, family.source.pool("test", **kwargs))
        ood.append(Shift(shift=kind, value=value, methods={
            method: {"final_nmse_db": rep["nmse_db"][-1], "final_objective": rep["objective"][-1],
                     "objective_nonincrease_fraction": rep["objective_nonincrease_fraction"]}
            for method, rep in reports.items()}))
    per_layer = run_all(family, methods, test)

    def curves_of(rep: dict) -> dict[str, list[float]]:
        return {k: rep[k] for k in ("nmse_db", "objective", "ci", "cii")}

    def final_of(rep: dict) -> dict[str, float]:
        return {"nmse_db": rep["nmse_db"][-1], "objective": rep["objective"][-1]}

    own = per_layer.pop(name)
    return Summary(
        family=cfg.family, kind="run", method=name, layers=sc.layers, rounds=0, final=final_of(own),
        per_layer=curves_of(own), descent=Descent(objective_nonincrease_fraction=own["objective_nonincrease_fraction"]),
        eval={"test_signals": len(test.y), "ood_signals": sc.ood_signals},
        comparisons={method: Comparison(final=final_of(rep), per_step=curves_of(rep), steps=sc.layers,
                                        description=DESCRIPTIONS.get(method, "standard unrolling, same model"),
                                        descent=Descent(objective_nonincrease_fraction=rep[
                                            "objective_nonincrease_fraction"]))
                     for method, rep in per_layer.items()},
        reference={"optimum_objective": layer_objectives([test.x_star], test.y, test.dictionary,
                                                         sc.rho).mean().item()},
        robustness=robustness, ood=ood,
    )


DESCRIPTIONS = {"ista": "ISTA, step 1/||D||_2^2, equal iterations", "fista": "FISTA, equal iterations"}
