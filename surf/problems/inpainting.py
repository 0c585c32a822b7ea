"""Image inpainting ``y = A x (+ noise)`` with ``A = diag(m)`` a 0/1 pixel mask; images ``(B, C, H, W)`` in [0, 1].

The GLOW-Prox objective (robust unrolling, TSP 2024; authors' ``1/sigma^2 = 100``) of an image ``x`` and a latent ``z``:

    F(x, z) = ||y - A x||^2 / sigma^2 - log N(z; 0, I)                                           (F)
    grad_x F = 2 A^T (A x - y) / sigma^2,     grad_z F = z                                        (dF)

The data-fidelity step of a layer is a gradient step on ``g(x) = 1/2 ||y - A x||^2`` (grad ``A^T (A x - y)``),
``x + mu A^T (y - A x)``; the authors' code has the opposite sign, ``x - mu A^T (y - A x)``, an ascent step. The
prox of the Gaussian prior ``(lambda/2) ||z||^2`` is ``z / (1 + lambda)``. The classical baseline is proximal gradient
on ``1/2 ||y - A x||^2 + rho ||Psi^T x||_1`` with the orthonormal 2-D DCT ``Psi`` (``surf.problems.proximal``), whose
prox is ``Psi soft(Psi^T v, eta rho)`` in closed form; the step is ``1 / ||A||_2^2 = 1``.
"""

from __future__ import annotations

import math

import torch

from surf.problems.lasso import soft_threshold
from surf.problems.proximal import Perturb, proximal_gradient


def observe(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A x``: the observed pixels (the missing ones set to 0)."""
    return mask * x


def fidelity_gradient(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``grad g(x) = A^T (A x - y)`` of ``g(x) = 1/2 ||y - A x||^2``."""
    return mask * (observe(x, mask) - y)


def data_step(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor | float) -> torch.Tensor:
    """``x + mu A^T (y - A x)``: a gradient-descent step on ``g`` (a descent step for ``0 < mu <= 1/||A||^2``)."""
    return x - mu * fidelity_gradient(x, y, mask)


def gaussian_prox(z: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """``prox_{(lambda/2)||.||^2}(z) = argmin_u 1/2 ||u - z||^2 + lambda/2 ||u||^2 = z / (1 + lambda)``."""
    return z / (1.0 + lam)


def _per_image(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).pow(2).sum(-1)


def objective(x: torch.Tensor, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """``F(x, z)`` per image (eq. F) -> (B,), with the Gaussian's normalizing constant."""
    neg_log_prior = 0.5 * _per_image(z) + 0.5 * z[0].numel() * math.log(2.0 * math.pi)
    return _per_image(y - observe(x, mask)) / sigma**2 + neg_log_prior


def objective_gradients(x: torch.Tensor, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                        sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_x F, grad_z F) = (2 A^T (A x - y) / sigma^2, z)`` (eq. dF), closed form."""
    return 2.0 * fidelity_gradient(x, y, mask) / sigma**2, z


def psnr(x: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB for images in [0, 1]: ``-10 log10(mean (x - clean)^2)`` -> (B,)."""
    return -10.0 * torch.log10((x - clean).flatten(1).pow(2).mean(-1).clamp_min(1e-12))


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``C[k, j] = s_k cos(pi (2j + 1) k / 2n)``, ``s_0 = sqrt(1/n)``, else ``sqrt(2/n)``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * j + 1) * k / (2 * n))
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """``Psi^T x``: the orthonormal 2-D DCT over the last two axes."""
    rows, cols = dct_matrix(x.shape[-2], x.dtype).to(x.device), dct_matrix(x.shape[-1], x.dtype).to(x.device)
    return rows @ x @ cols.T


def idct2(c: torch.Tensor) -> torch.Tensor:
    """``Psi c``: the inverse of :func:`dct2` (its transpose)."""
    rows, cols = dct_matrix(c.shape[-2], c.dtype).to(c.device), dct_matrix(c.shape[-1], c.dtype).to(c.device)
    return rows.T @ c @ cols


def dct_objective(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, rho: float) -> torch.Tensor:
    """``1/2 ||y - A x||^2 + rho ||Psi^T x||_1`` per image -> (B,): the classical baseline's objective."""
    return 0.5 * _per_image(y - observe(x, mask)) + rho * dct2(x).flatten(1).abs().sum(-1)


def dct_inpaint(y: torch.Tensor, mask: torch.Tensor, rho: float, iters: int, accelerated: bool = True,
                perturb: Perturb | None = None) -> list[torch.Tensor]:
    """ISTA / FISTA on :func:`dct_objective` from ``x_0 = y`` (``perturb(0, y)`` if given), step 1 -> ``[x_0..]``."""
    x0 = y if perturb is None else perturb(0, y)
    return proximal_gradient(x0, lambda x: fidelity_gradient(x, y, mask),
                             lambda v, eta: idct2(soft_threshold(dct2(v), eta * rho)), 1.0, iters, accelerated,
                             perturb)
