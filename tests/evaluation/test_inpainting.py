"""The inpainting evaluator: every method sees the same perturbations, the classical prior is tuned on validation
images only, the distribution shifts are the configured ones and the image-grid examples have every layer."""

import torch

from surf.evaluation.inpainting import examples, ood_batches, run_all, solvers
from surf.families.inpainting.family import InpaintingFamily
from tests.families.test_inpainting import config, random_pools


def _family():
    return InpaintingFamily(config(), pools=random_pools())


def test_every_method_sees_the_same_initial_perturbation():
    fam = _family()
    model = fam.build_model().eval()
    batch = fam.fixed_batch("test", 6)
    methods = solvers(fam, {"net": model})
    seen = {}
    for name, solve in methods.items():
        original = solve

        def recording(b, p, name=name, original=original):
            result = original(b, p)
            seen[name] = (result.x if hasattr(result, "x") else result)[0]
            return result

        methods[name] = recording
    reports = run_all(fam, methods, batch, "input", 0.1)
    assert set(reports) == {"net", "dct_ista", "dct_fista"}
    assert not torch.equal(seen["net"], batch.y)
    assert torch.equal(seen["net"], seen["dct_ista"]) and torch.equal(seen["net"], seen["dct_fista"])
    clean = run_all(fam, methods, batch)
    assert clean["dct_fista"]["psnr"][0] == clean["net"]["psnr"][0]  # x_0 = y for everyone
    assert clean["net"]["constraint_satisfied_fraction"] is not None
    assert clean["dct_ista"]["constraint_satisfied_fraction"] is None


def test_classical_weight_comes_from_the_grid_and_shifts_are_the_configured_ones():
    fam = _family()
    assert fam.classical_rho(3, True) in (0.1, 0.3)
    shifts = [(kind, value) for kind, value, _ in ood_batches(fam, 5)]
    assert shifts == [("center_size", 0.5), ("pixels", 0.5), ("noise", 0.1)]
    noisy = ood_batches(fam, 5)[-1][2]
    assert not torch.equal(noisy.y, noisy.mask * noisy.clean)


def test_examples_hold_every_layer_of_every_method():
    fam = _family()
    out = examples(fam, fam.build_model(), fam.build_model())
    assert out["clean"].shape == (2, 1, 8, 8)
    assert {k for k in out if k not in ("clean", "observed", "mask")} == {
        "constrained_glow_prox", "standard_glow_prox", "dct_ista", "dct_fista"}
    assert all(out[k].shape == (2, 4, 1, 8, 8) for k in ("constrained_glow_prox", "dct_fista"))
