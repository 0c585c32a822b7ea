"""The inpainting problem: the data step descends ||y - Ax||^2 (the authors' sign ascends), the Gaussian prox and the
gradients of F in closed form, the orthonormal DCT and the DCT-prior ISTA / FISTA baseline."""

import math

import pytest
import torch

from surf.problems.inpainting import (
    data_step,
    dct2,
    dct_inpaint,
    dct_matrix,
    dct_objective,
    fidelity_gradient,
    gaussian_prox,
    idct2,
    objective,
    objective_gradients,
    observe,
    psnr,
)


def _problem(seed=0, b=4, c=1, h=8, w=8):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, c, h, w, generator=gen, dtype=torch.float64)
    mask = (torch.rand(b, 1, h, w, generator=gen) > 0.4).double()
    x = torch.rand(b, c, h, w, generator=gen, dtype=torch.float64)
    return clean, mask, observe(clean, mask), x


def _fidelity(x, y, mask):
    return (y - observe(x, mask)).flatten(1).pow(2).sum(-1)


@pytest.mark.parametrize("mu", [0.05, 0.3, 0.7, 1.0])
def test_data_step_is_a_descent_step_for_mu_up_to_one_over_norm_a_squared(mu):
    _, mask, y, x = _problem()
    assert torch.linalg.matrix_norm(torch.diag(mask[0, 0].flatten()), ord=2).item() == 1.0  # ||A||_2 = 1: mu <= 1
    before, after = _fidelity(x, y, mask), _fidelity(data_step(x, y, mask, mu), y, mask)
    assert (after < before).all()
    assert torch.allclose(after, (1 - mu) ** 2 * before)  # A = diag(m): the residual shrinks by (1 - mu)
    authors = x + mu * mask * (y - observe(x, mask))  # the authors' x - mu A^T (y - A x) with their sign flipped back
    assert torch.allclose(data_step(x, y, mask, mu), authors)
    ascent = x - mu * mask * (y - observe(x, mask))  # the authors' code as written
    assert (_fidelity(ascent, y, mask) > before).all()


def test_fidelity_and_objective_gradients_match_autograd():
    _, mask, y, x = _problem()
    z = torch.randn(4, 4, 4, 4, dtype=torch.float64)
    x.requires_grad_(True)
    z.requires_grad_(True)
    gx, gz = torch.autograd.grad(objective(x, z, y, mask, 0.1).sum(), (x, z))
    cx, cz = objective_gradients(x, z, y, mask, 0.1)
    assert torch.allclose(gx, cx) and torch.allclose(gz, cz)
    (g,) = torch.autograd.grad(0.5 * _fidelity(x, y, mask).sum(), x)
    assert torch.allclose(g, fidelity_gradient(x, y, mask))
    # F at the clean image and z = 0 is the Gaussian's constant d/2 log(2 pi)
    zero = torch.zeros(1, 4, 4, 4, dtype=torch.float64)
    assert objective(y[:1], zero, y[:1], mask[:1], 0.1).item() == pytest.approx(32 * math.log(2 * math.pi))


def test_gaussian_prox_is_the_closed_form_minimizer():
    z = torch.randn(5, 16, dtype=torch.float64)
    lam = 0.7
    u = gaussian_prox(z, lam)
    assert torch.allclose(u, z / 1.7)
    # optimality of 1/2 ||u - z||^2 + lam/2 ||u||^2: (u - z) + lam u = 0, and any other point is worse
    assert torch.allclose((u - z) + lam * u, torch.zeros_like(z), atol=1e-12)
    cost = lambda v: 0.5 * (v - z).pow(2).sum() + 0.5 * lam * v.pow(2).sum()  # noqa: E731
    assert all(cost(u) < cost(u + 1e-3 * torch.randn(5, 16, dtype=torch.float64)) for _ in range(5))


def test_dct_is_orthonormal_and_inverted():
    c = dct_matrix(8, torch.float64)
    assert torch.allclose(c @ c.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    x = torch.rand(3, 2, 8, 6, dtype=torch.float64)
    assert torch.allclose(idct2(dct2(x)), x) and torch.allclose(dct2(x).pow(2).sum(), x.pow(2).sum())
    assert dct2(torch.ones(1, 1, 8, 8))[0, 0, 0, 0].item() == pytest.approx(8.0)  # the DC coefficient


def test_dct_ista_descends_its_objective_and_fista_is_ahead():
    clean, mask, y, _ = _problem(b=6)
    ista = dct_inpaint(y, mask, 0.05, 30, accelerated=False)
    values = torch.stack([dct_objective(x, y, mask, 0.05) for x in ista])
    assert (values[1:] <= values[:-1] + 1e-12).all()  # ISTA with step 1/||A||^2 is monotone
    assert torch.equal(ista[0], y)
    fista = dct_inpaint(y, mask, 0.05, 30)
    assert dct_objective(fista[-1], y, mask, 0.05).mean() <= values[-1].mean()
    assert psnr(clean, clean).min() >= 119.0 and psnr(y, clean).mean() < psnr(fista[-1], clean).mean()
