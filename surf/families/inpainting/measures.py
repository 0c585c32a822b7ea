"""Per-layer measures of a GLOW-Prox trajectory: CI / CII constraint values, PSNR, SSIM and the objective F.

Constraint values are batch means of per-image norms (one scalar per layer, as in the other families), turned into
slacks by the shared ``surf.constrained.constraints.descent_constraints``:

* CI (the authors' constraints): the x-gradient ``a^x_l = mean_b ||grad_x F(x_l, z_l)|| = mean_b ||2 A^T (A x_l - y)
  / sigma^2||`` and the z-gradient ``a^z_l = mean_b ||grad_z F|| = mean_b ||z_l||`` (closed forms,
  ``surf.problems.inpainting``), one constraint each per layer;
* CII: ``a_l = mean_b ||x_l - x*||`` with ``x*`` the clean image or a long classical solve.

SSIM is torchmetrics' (Wang et al. 2004): an 11x11 Gaussian window (sigma 1.5) on images of side >= 11, a 7x7
uniform window otherwise (scikit-image's default; the 8x8 digits), data range 1.
"""

from __future__ import annotations

import torch

from surf.models.glow_prox import GlowProxTrajectory
from surf.problems.inpainting import objective, objective_gradients, psnr


def image_norms(t: torch.Tensor) -> torch.Tensor:
    """``||t_b||`` per image (B, ...) -> (B,)."""
    return t.flatten(1).norm(dim=-1)


def ci_per_image(traj: GlowProxTrajectory, y: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """``||grad_x F(x_l, z_l)||`` and ``||grad_z F(x_l, z_l)||`` per layer and image -> (2, L+1, B)."""
    rows = [objective_gradients(x, z, y, mask, sigma) for x, z in zip(traj.x, traj.z, strict=True)]
    return torch.stack([torch.stack([image_norms(gx) for gx, _ in rows]),
                        torch.stack([image_norms(gz) for _, gz in rows])])


def cii_per_image(xs: list[torch.Tensor], reference: torch.Tensor) -> torch.Tensor:
    """``||x_l - x*||`` per layer and image -> (L+1, B)."""
    return torch.stack([image_norms(x - reference) for x in xs])


def layer_psnr(xs: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per layer and image -> (L+1, B)."""
    return torch.stack([psnr(x, clean) for x in xs])


def layer_ssim(xs: list[torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
    """SSIM per layer and image -> (L+1, B) (torchmetrics, imported here: it takes seconds to import)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    large = min(clean.shape[-2:]) >= 11
    window = {"gaussian_kernel": True, "sigma": 1.5, "kernel_size": 11} if large else \
        {"gaussian_kernel": False, "kernel_size": 7}
    return torch.stack([ssim(x.clamp(0.0, 1.0), clean, data_range=1.0, reduction="none", **window) for x in xs])


def layer_objective(traj: GlowProxTrajectory, y: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """``F(x_l, z_l)`` per layer and image -> (L+1, B)."""
    return torch.stack([objective(x, z, y, mask, sigma) for x, z in zip(traj.x, traj.z, strict=True)])
