"""Labelled sample sources: the bundled digits set, a synthetic Gaussian mixture and user ``.npz`` feature files.

Every source yields float32 features ``[n, d]``, int64 labels ``[n]`` in ``0..C-1`` and the class count ``C``, plus
an optional predefined test split (an ``.npz`` with ``test_features``/``test_labels``), which then becomes the whole
meta-test pool, as the paper does with CIFAR-10's test split.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surf.config import DataConfig
from surf.utils.errors import ConfigError, DataError
from surf.utils.seeding import numpy_generator

SOURCES: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits (1797 samples, 64 features / 16, 10 classes; no download)",
    "gaussian": "synthetic Gaussian mixture (data.gaussian_dim/classes/samples/separation), fixed per seed",
    "npz": "features from an .npz file (data.path): features/labels (or x/y), optional test_features/test_labels "
    "(or x_test/y_test) as the meta-test pool, optional num_classes",
}

_NPZ_KEYS = (("features", "labels"), ("x", "y"))
_NPZ_TEST_KEYS = (("test_features", "test_labels"), ("x_test", "y_test"))


@dataclass(frozen=True)
class Source:
    """A labelled sample set; ``test_features``/``test_labels`` are a predefined test split when not None."""

    features: np.ndarray  # float32 [n, d]
    labels: np.ndarray  # int64 [n]
    num_classes: int
    test_features: np.ndarray | None = None  # float32 [n_test, d]
    test_labels: np.ndarray | None = None  # int64 [n_test]


def load_source(cfg: DataConfig, seed: int) -> Source:
    """Load the source named by ``cfg.source``; ``seed`` fixes the synthetic Gaussian mixture."""
    if cfg.source == "digits":
        return digits()
    if cfg.source == "gaussian":
        return gaussian(cfg.gaussian_dim, cfg.gaussian_classes, cfg.gaussian_samples, cfg.gaussian_separation, seed)
    if cfg.source == "npz":
        if not cfg.path:
            raise ConfigError("data.source=npz needs data.path=FILE.npz (features + labels arrays)")
        return load_npz(cfg.path)
    raise ConfigError(f"data.source={cfg.source!r} is not one of {', '.join(SOURCES)}")


def digits() -> Source:
    """scikit-learn's 8x8 digits, pixel intensities scaled from 0..16 to 0..1."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    features = (bunch.data / 16.0).astype(np.float32)
    return Source(features, bunch.target.astype(np.int64), int(bunch.target.max()) + 1)


def gaussian(dim: int, num_classes: int, samples: int, separation: float, seed: int) -> Source:
    """Balanced Gaussian mixture: class means ``~ N(0, I) * separation / sqrt(dim)``, unit-variance noise.

    The scaling puts class means about ``sqrt(2) * separation`` apart whatever ``dim``; ``separation=3`` with the
    defaults (64 dims, 10 classes) lets a linear classifier reach roughly 85-90% held-out accuracy.
    """
    if dim < 1 or num_classes < 2 or samples < 2 * num_classes:
        raise ConfigError(
            f"gaussian source needs data.gaussian_dim >= 1, data.gaussian_classes >= 2 and data.gaussian_samples >= "
            f"2 x classes (got {dim}, {num_classes}, {samples})"
        )
    rng = numpy_generator(seed, "gaussian_source")
    means = rng.standard_normal((num_classes, dim)) * separation / np.sqrt(dim)
    labels = rng.permutation(np.arange(samples) % num_classes).astype(np.int64)
    features = (means[labels] + rng.standard_normal((samples, dim))).astype(np.float32)
    return Source(features, labels, num_classes)


def load_npz(path: str | Path) -> Source:
    """Read features/labels (or x/y) and an optional test split from ``path``; malformed files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"data file '{path}' not found; build features with `surf features` or point data.path at an .npz with "
            "'features' and 'labels' arrays"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"data file '{path}' is not a readable .npz archive ({exc})") from None
    train = _pick_pair(arrays, _NPZ_KEYS)
    if train is None:
        raise DataError(f"data file '{path}' has no 'features'/'labels' (or 'x'/'y') arrays; found {sorted(arrays)}")
    test = _pick_pair(arrays, _NPZ_TEST_KEYS)
    features, labels = _check_pair(path, "", *train)
    test_features = test_labels = None
    if test is not None:
        test_features, test_labels = _check_pair(path, "test_", *test)
        if test_features.shape[1] != features.shape[1]:
            raise DataError(
                f"data file '{path}': test_features have {test_features.shape[1]} columns, features have "
                f"{features.shape[1]}"
            )
    observed = int(max(labels.max(), -1 if test_labels is None else test_labels.max())) + 1
    num_classes = observed
    if "num_classes" in arrays:
        num_classes = int(arrays["num_classes"])
        if observed > num_classes:
            raise DataError(f"data file '{path}': labels must lie in 0..{num_classes - 1} (num_classes={num_classes})")
    if num_classes < 2:
        raise DataError(f"data file '{path}': labels hold a single class; a classification task needs >= 2")
    return Source(features, labels, num_classes, test_features, test_labels)


def _pick_pair(arrays: dict[str, np.ndarray], names: tuple[tuple[str, str], ...]) -> tuple | None:
    """The first (features, labels) pair of ``names`` present in ``arrays``."""
    for x_name, y_name in names:
        if x_name in arrays and y_name in arrays:
            return arrays[x_name], arrays[y_name]
    return None


def _check_pair(path: Path, prefix: str, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one features/labels pair and cast it to float32 / int64."""
    where = f"data file '{path}'"
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise DataError(f"{where}: {prefix}features must be a non-empty 2-D array [n, d], got shape {features.shape}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise DataError(
            f"{where}: {prefix}labels must be 1-D with one label per row of {prefix}features "
            f"({features.shape[0]}), got shape {labels.shape}"
        )
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype, np.complexfloating):
        raise DataError(f"{where}: {prefix}features must be real numbers, got dtype {features.dtype}")
    features = features.astype(np.float32)
    if not np.isfinite(features).all():
        raise DataError(f"{where}: {prefix}features contain NaN or infinite values")
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)) or labels.min() < 0:
        raise DataError(f"{where}: {prefix}labels must be integers in 0..C-1 (class indices)")
    return features, labels.astype(np.int64)


def zscore(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Standardize ``features`` with the mean/std of rows ``reference`` (the meta-train pool); constant columns
    are only centred."""
    ref = features[reference].astype(np.float64)
    mean, std = ref.mean(0), ref.std(0)
    std[std < 1e-8] = 1.0
    return ((features - mean) / std).astype(np.float32)
