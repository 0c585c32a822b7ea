"""Inpainting problems: disjoint image pools and keyed masks.

Images come from ``surf.data.image_sets`` (embedded digits by default), optionally upsampled, and are split into
disjoint meta-train / validation / meta-test pools by ``data.pool_fractions`` after a keyed shuffle. A mask is 1 on
observed pixels and 0 on missing ones, shared by the channels of an image:

* ``center``: one centered square of side ``round(size * H)`` (the authors' 24x24 of 64x64 is size 0.375);
* ``squares``: ``squares`` squares of that side at keyed random positions (they may overlap);
* ``pixels``: every pixel missing with probability ``rate``.

Observations are ``y = A (x + noise_std * n)``, ``n ~ N(0, I)``; every draw is keyed by what it is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from surf.config import Config, InpaintingConfig
from surf.data.image_sets import load_images, upsample
from surf.utils.errors import DataError
from surf.utils.replicas import check_fits
from surf.utils.seeding import torch_generator

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MaskSpec:
    """Which pixels are missing: the kind and its size (square side / image side) or missing rate."""

    kind: str
    size: float = 0.375
    squares: int = 3
    rate: float = 0.5

    @classmethod
    def of(cls, ic: InpaintingConfig, kind: str | None = None, size: float | None = None) -> MaskSpec:
        """The configured mask, or another ``kind`` / ``size`` (out-of-distribution masks)."""
        return cls(kind or ic.mask, ic.mask_size if size is None else size, ic.mask_squares, ic.mask_rate)

    def describe(self) -> str:
        if self.kind == "pixels":
            return f"pixels (rate {self.rate:g})"
        return f"{self.kind} (side {self.size:g})" + (f" x{self.squares}" if self.kind == "squares" else "")


def make_masks(spec: MaskSpec, count: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` masks (count, 1, H, W), 1 = observed."""
    if spec.kind == "pixels":
        return (torch.rand(count, 1, height, width, generator=gen) >= spec.rate).float()
    side = max(1, min(height, width, round(spec.size * min(height, width))))
    masks = torch.ones(count, 1, height, width)
    if spec.kind == "center":
        top, left = (height - side) // 2, (width - side) // 2
        masks[..., top:top + side, left:left + side] = 0.0
        return masks
    tops = torch.randint(height - side + 1, (count, spec.squares), generator=gen)
    lefts = torch.randint(width - side + 1, (count, spec.squares), generator=gen)
    for i in range(count):
        for top, left in zip(tops[i].tolist(), lefts[i].tolist(), strict=True):
            masks[i, :, top:top + side, left:left + side] = 0.0
    return masks


def image_pools(cfg: Config) -> dict[str, torch.Tensor]:
    """The configured images (N, C, H, W) in [0, 1], shuffled by a keyed permutation and split into disjoint pools."""
    ic = cfg.inpainting
    images = torch.from_numpy(load_images(ic.images, ic.path))
    images = images[torch.randperm(len(images), generator=torch_generator(cfg.seed, "inpainting", "image_pools"))]
    if ic.max_images:
        images = images[:ic.max_images]
    check_fits(images.element_size() * images.numel() * ic.upsample**2, "the upsampled images")
    images = upsample(images, ic.upsample)
    _check_shape(images.shape[1:], ic)
    sizes = [int(round(f * len(images))) for f in cfg.data.pool_fractions[:2]]
    bounds = [0, sizes[0], sizes[0] + sizes[1], len(images)]
    pools = {split: images[bounds[i]:bounds[i + 1]] for i, split in enumerate(SPLITS)}
    for split, pool in pools.items():
        if len(pool) == 0:
            raise DataError(f"the {split} pool of {len(images)} images is empty; raise inpainting.max_images or change "
                            "data.pool_fractions")
    return pools


def _check_shape(shape: torch.Size, ic: InpaintingConfig) -> None:
    """The flow squeezes 2x2 pixels per level: H and W must be divisible by 2^levels (and SSIM needs >= 7 pixels)."""
    channels, height, width = shape
    factor = 2 ** min(ic.flow_levels, min(height, width).bit_length())  # more levels than that cannot divide a side
    if height % factor or width % factor or min(height, width) < 7:
        raise DataError(f"images of {height}x{width} pixels (after inpainting.upsample={ic.upsample}) need sides "
                        f">= 7 and divisible by 2^flow_levels = 2^{ic.flow_levels}; change inpainting.flow_levels or "
                        "upsample")


@dataclass(frozen=True)
class InpaintingBatch:
    """Clean images, masks and observations ``y = A (x + noise)``; ``key`` names the draws."""

    key: tuple
    clean: torch.Tensor  # (B, C, H, W)
    mask: torch.Tensor  # (B, 1, H, W)
    y: torch.Tensor  # (B, C, H, W)


def observe_batch(key: tuple, clean: torch.Tensor, spec: MaskSpec, noise_std: float, seed: int) -> InpaintingBatch:
    """Masks and noisy observations of ``clean``, keyed by ``(seed, key, mask spec, noise)``."""
    gen = torch_generator(seed, "inpainting", "observe", *key, spec, noise_std)
    mask = make_masks(spec, len(clean), clean.shape[-2], clean.shape[-1], gen)
    noisy = clean + noise_std * torch.randn(clean.shape, generator=gen) if noise_std > 0 else clean
    return InpaintingBatch(key, clean, mask, mask * noisy)
