"""Image sets for reconstruction families: the embedded digits, user .npz images (layouts, ranges, errors)."""

import numpy as np
import pytest
import torch

from surf.data.image_sets import load_images, read_npz_images, upsample
from surf.utils.errors import DataError


def test_digits_are_grey_8x8_in_unit_range():
    images = load_images("digits")
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0


def test_npz_layouts_and_ranges(tmp_path):
    colour = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    np.savez(tmp_path / "c.npz", images=colour)
    read = read_npz_images(tmp_path / "c.npz")
    assert read.shape == (2, 3, 4, 6) and read[1, 2, 3, 4] == pytest.approx(colour[1, 3, 4, 2] / 255)
    np.savez(tmp_path / "g.npz", x=np.full((3, 5, 5), 0.25, dtype=np.float64))
    assert read_npz_images(tmp_path / "g.npz").shape == (3, 1, 5, 5)
    np.savez(tmp_path / "f.npz", images=np.full((3, 5, 5), 2.0))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        read_npz_images(tmp_path / "f.npz")
    np.savez(tmp_path / "k.npz", pictures=colour)
    with pytest.raises(DataError, match="no 'images'"):
        read_npz_images(tmp_path / "k.npz")
    with pytest.raises(DataError, match="not found"):
        read_npz_images(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="MNIST|mnist|idx"):
        load_images("mnist", str(tmp_path))


def test_upsample_keeps_range_and_scales_sides():
    images = torch.rand(2, 1, 8, 8)
    assert torch.equal(upsample(images, 1), images)
    big = upsample(images, 2)
    assert big.shape == (2, 1, 16, 16) and 0.0 <= big.min() and big.max() <= 1.0
