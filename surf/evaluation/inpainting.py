"""Meta-test report of the inpainting family: GLOW-Prox vs the classical DCT prior at equal iterations.

Every method runs on the same ``inpainting.test_images`` meta-test images and masks from ``x_0 = y``, ``L``
layers / iterations:

* in distribution: per-layer PSNR and SSIM against the clean image, the data term ``||y - A x_l||^2 / sigma^2``, the
  objective F (learned models) and the shares of (image, layer) pairs where the PSNR did not decrease, the method's
  objective did not increase (F for the networks, the DCT-l1 objective for ISTA / FISTA) and, for the networks,
  where the run's descent constraint held per image;
* robustness: Gaussian noise of per-pixel std ``delta`` on the layer outputs 1..L-1 (``layers``) or on the initial
  image ``x_0`` (``input``), the same draws for every method;
* out of distribution: centered holes of other sizes, other mask kinds and observation noise on ``y``.

The classical baselines are ISTA / FISTA on ``1/2 ||y - A x||^2 + rho ||DCT(x)||_1`` with ``rho`` tuned on validation
images for the final PSNR at ``L`` iterations. A ``twin`` (standard unrolling, ``constraints.kind=none``, all else
equal) is reported side by side, measured with the constrained run's constraint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from surf.constrained.constraints import nonincrease_fraction
from surf.evaluation.robustness import strength_sweep
from surf.evaluation.summary import Comparison, Descent, Shift, Summary
from surf.families.inpainting.data import InpaintingBatch, MaskSpec
from surf.families.inpainting.family import InpaintingFamily
from surf.families.inpainting.measures import ci_per_image, cii_per_image, layer_objective, layer_psnr, layer_ssim
from surf.models.glow_prox import GlowProxTrajectory
from surf.models.perturbation import noise_hook
from surf.problems.inpainting import dct_inpaint, dct_objective, observe
from surf.problems.proximal import Perturb

Solver = Callable[[InpaintingBatch, Perturb | None], GlowProxTrajectory | list[torch.Tensor]]
CLASSICAL = {"dct_ista": False, "dct_fista": True}  # name -> accelerated
DESCRIPTIONS = {"dct_ista": "ISTA on a DCT-l1 prior (rho tuned on validation), step 1, equal iterations",
                "dct_fista": "FISTA on a DCT-l1 prior (rho tuned on validation), equal iterations"}


def method_name(constrained: bool) -> str:
    return f"{'constrained' if constrained else 'standard'}_glow_prox"


def solvers(family: InpaintingFamily, models: dict[str, nn.Module]) -> dict[str, Solver]:
    """The learned networks and the classical DCT-prior solvers with as many iterations as layers."""
    layers = family.ic.layers
    out: dict[str, Solver] = {name: (lambda b, p, m=model: m(b.y, b.mask, p)) for name, model in models.items()}
    for name, accelerated in CLASSICAL.items():
        rho = family.classical_rho(layers, accelerated)
        out[name] = lambda b, p, r=rho, a=accelerated: dct_inpaint(b.y, b.mask, r, layers, a, p)
    return out


def report(family: InpaintingFamily, result: GlowProxTrajectory | list[torch.Tensor], batch: InpaintingBatch,
           rho: float | None) -> dict:
    """Per-layer curves and descent shares of one method's trajectory on ``batch``."""
    xs = result.x if isinstance(result, GlowProxTrajectory) else result
    sigma = family.ic.sigma
    psnr = layer_psnr(xs, batch.clean)
    fidelity = torch.stack([(batch.y - observe(x, batch.mask)).flatten(1).pow(2).sum(-1) for x in xs]) / sigma**2
    rep = {"psnr": psnr.mean(-1).tolist(), "ssim": layer_ssim(xs, batch.clean).mean(-1).tolist(),
           "fidelity": fidelity.mean(-1).tolist(), "distance": cii_per_image(xs, batch.clean).mean(-1).tolist(),
           "distance_nonincrease_fraction": nonincrease_fraction(-psnr)}
    if isinstance(result, GlowProxTrajectory):
        objective = layer_objective(result, batch.y, batch.mask, sigma)
        ci = ci_per_image(result, batch.y, batch.mask, sigma).mean(-1)
        slacks = family.slacks(family.per_image_values(result, batch))
        rep.update(objective=objective.mean(-1).tolist(), ci_x=ci[0].tolist(), ci_z=ci[1].tolist(),
                   objective_nonincrease_fraction=nonincrease_fraction(objective),
                   constraint_satisfied_fraction=(slacks <= 0).float().mean().item())
    else:
        objective = torch.stack([dct_objective(x, batch.y, batch.mask, rho) for x in xs])
        rep.update(objective_nonincrease_fraction=nonincrease_fraction(objective),
                   constraint_satisfied_fraction=None)
    return rep


def run_all(family: InpaintingFamily, methods: dict[str, Solver], batch: InpaintingBatch, kind: str = "",
            delta: float = 0.0) -> dict[str, dict]:
    """Every method on ``batch``; ``kind = layers | input`` adds noise of std ``delta`` (same draws for all)."""
    perturb = None
    if delta > 0:
        layers = family.ic.layers
        scales = [0.0] + [delta] * (layers - 1) + [0.0] if kind == "layers" else [delta] + [0.0] * layers
        perturb = noise_hook(family.cfg.seed, ("inpainting", "test", kind, delta), scales)
    return {name: report(family, solve(batch, perturb), batch, _rho(family, name)) for name, solve in methods.items()}


def _rho(family: InpaintingFamily, name: str) -> float | None:
    return family.classical_rho(family.ic.layers, CLASSICAL[name]) if name in CLASSICAL else None


def ood_batches(family: InpaintingFamily, count: int) -> list[tuple[str, float, InpaintingBatch]]:
    """(shift, value, test batch) for every configured distribution shift of the masks and the observation noise."""
    ic = family.ic
    shifts = [("center_size", v, family.fixed_batch("test", count, MaskSpec.of(ic, "center", v)))
              for v in ic.ood_mask_sizes]
    for kind in dict.fromkeys(ic.ood_masks):
        if kind != ic.mask:
            spec = MaskSpec.of(ic, kind)
            shifts.append((kind, spec.rate if kind == "pixels" else spec.size, family.fixed_batch("test", count, spec)))
    return shifts + [("noise", v, family.fixed_batch("test", count, noise=v)) for v in ic.ood_noise]


def _descent(rep: dict) -> Descent:
    return Descent(objective_nonincrease_fraction=rep["objective_nonincrease_fraction"],
                   constraint_satisfied_fraction=rep["constraint_satisfied_fraction"],
                   distance_nonincrease_fraction=rep["distance_nonincrease_fraction"])


def _final(rep: dict) -> dict[str, float]:
    keys = [k for k in ("psnr", "ssim", "objective") if k in rep]
    return {k: rep[k][-1] for k in keys}


def _curves(rep: dict) -> dict[str, list[float]]:
    return {k: v for k, v in rep.items() if isinstance(v, list)}


def _models(family: InpaintingFamily, model: nn.Module, twin: nn.Module | None) -> dict[str, nn.Module]:
    models = {method_name(family.cfg.constraints.kind != "none"): model}
    if twin is not None:
        models[method_name(False)] = twin
    for m in models.values():
        m.eval()
    return models


@torch.no_grad()
def evaluate(family: InpaintingFamily, model: nn.Module, twin: nn.Module | None = None) -> Summary:
    """The inpainting meta-test report (see the module docstring), with the standard-unrolling ``twin`` if given."""
    cfg, ic = family.cfg, family.ic
    models = _models(family, model, twin)
    name = next(iter(models))
    methods = solvers(family, models)
    count = min(ic.test_images, len(family.pools["test"]))
    test = family.fixed_batch("test", count)

    def pick(rep: dict) -> dict:
        return {"final_psnr": rep["psnr"][-1], "psnr": rep["psnr"],
                "distance_nonincrease_fraction": rep["distance_nonincrease_fraction"]}

    robustness = {kind: strength_sweep(ic.perturb_strengths, lambda d, k=kind: run_all(family, methods, test, k, d),
                                       pick) for kind in ("layers", "input")}
    ood = [Shift(shift=shift, value=value, methods={
        method: {"final_psnr": rep["psnr"][-1], "final_ssim": rep["ssim"][-1],
                 "distance_nonincrease_fraction": rep["distance_nonincrease_fraction"]}
        for method, rep in run_all(family, methods, batch).items()})
        for shift, value, batch in ood_batches(family, count)]
    per_layer = run_all(family, methods, test)
    own = per_layer.pop(name)
    long_rho = family.classical_rho(ic.reference_iters, True)
    long_solve = dct_inpaint(test.y, test.mask, long_rho, ic.reference_iters)[-1]
    c, h, w = family.shape
    return Summary(
        family=cfg.family, kind="run", method=name, layers=ic.layers, rounds=0, final=_final(own),
        per_layer=_curves(own), descent=_descent(own),
        eval={"test_images": count, "image_shape": f"{c}x{h}x{w}", "images": ic.images,
              "mask": family.spec.describe(), "noise_std": ic.noise_std},
        comparisons={method: Comparison(
            final=_final(rep), per_step=_curves(rep), steps=ic.layers,
            hyper={"rho": _rho(family, method)} if method in CLASSICAL else {},
            description=DESCRIPTIONS.get(method, "standard unrolling, same model and seed"), descent=_descent(rep))
            for method, rep in per_layer.items()},
        reference={"observed_psnr": own["psnr"][0],
                   "classical_long_psnr": layer_psnr([long_solve], test.clean).mean().item(),
                   "classical_long_iters": ic.reference_iters, "classical_long_rho": long_rho},
        robustness=robustness, ood=ood,
    )


@torch.no_grad()
def examples(family: InpaintingFamily, model: nn.Module, twin: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The first ``inpainting.examples`` test images: clean, observed and every method's per-layer reconstructions
    (n, L+1, C, H, W), for the image grid."""
    count = min(family.ic.examples, len(family.pools["test"]))
    batch = family.fixed_batch("test", count)
    out = {"clean": batch.clean.cpu(), "observed": batch.y.cpu(), "mask": batch.mask.cpu()}
    for name, solve in solvers(family, _models(family, model, twin)).items():
        result = solve(batch, None)
        xs = result.x if isinstance(result, GlowProxTrajectory) else result
        out[name] = torch.stack(xs, dim=1).cpu()
    return out
