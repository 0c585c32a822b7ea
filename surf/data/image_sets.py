"""Unlabelled image sets for image-reconstruction families: float32 ``(N, C, H, W)`` arrays with values in [0, 1].

``digits`` (scikit-learn's embedded 8x8 digits, no download), ``npz`` (a user file holding an ``images`` or ``x``
array of shape (N, H, W) or (N, H, W, C), integers 0..255 or floats in [0, 1]) and the official MNIST / CIFAR-10
files read by ``surf.data.images`` (train and test splits pooled; the caller splits them). Bad files raise a one-line
``DataError``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from surf.data.images import read_dataset
from surf.data.sources import digits
from surf.utils.errors import DataError

IMAGE_SETS: dict[str, str] = {
    "digits": "scikit-learn's embedded 8x8 digits (1797 grey images, 17 levels; no download)",
    "npz": "an .npz file (inpainting.path) with an 'images' or 'x' array (N, H, W) or (N, H, W, C)",
    "mnist": "MNIST from the official idx files in the folder inpainting.path (70,000 grey 28x28)",
    "cifar10": "CIFAR-10 from the official python batches in inpainting.path (60,000 colour 32x32)",
}


def load_images(kind: str, path: str | None = None) -> np.ndarray:
    """The image set ``kind`` as float32 ``(N, C, H, W)`` in [0, 1]."""
    if kind == "digits":
        return digits().features.reshape(-1, 1, 8, 8).astype(np.float32)
    if kind in ("mnist", "cifar10"):
        data = read_dataset(kind, path or ".")
        return np.concatenate([data.train.images, data.test.images]).astype(np.float32) / 255.0
    if kind == "npz":
        return read_npz_images(path or "")
    raise DataError(f"unknown image set {kind!r}; use one of {', '.join(IMAGE_SETS)}")


def read_npz_images(path: str | Path) -> np.ndarray:
    """The ``images`` (or ``x``) array of an .npz file, channel-first float32 in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file '{path}' not found; point inpainting.path at an .npz with an 'images' array")
    try:
        with np.load(path, allow_pickle=False) as archive:
            name = next((n for n in ("images", "x") if n in archive.files), None)
            if name is None:
                raise DataError(f"image file '{path}' has no 'images' (or 'x') array; found {sorted(archive.files)}")
            images = archive[name]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"image file '{path}' is not a readable .npz archive ({exc})") from None
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"image file '{path}': images must be (N, H, W) or (N, H, W, C) with C = 1 or 3; got "
                        f"shape {images.shape}")
    if images.shape[0] == 0 or not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
        raise DataError(f"image file '{path}': images must be a non-empty real array")
    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise DataError(f"image file '{path}': integer images must hold 0..255")
        return images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise DataError(f"image file '{path}': float images must be finite and in [0, 1] (or store uint8 0..255)")
    return images


def upsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upscaling by an integer ``factor`` (identity for 1), clamped to [0, 1]."""
    if factor == 1:
        return images
    scaled = torch.nn.functional.interpolate(images, scale_factor=factor, mode="bilinear", align_corners=False)
    return scaled.clamp(0.0, 1.0)
