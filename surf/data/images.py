"""Readers for raw image data sets in their official file formats: MNIST (idx files) and CIFAR-10 (python pickles).

Nothing is downloaded: the user puts the official files in a local folder and passes it as ``--root``. A missing or
malformed file raises :class:`~surf.errors.DataError` with one line naming the expected files and where to get them.

Formats (parsed exactly):

* idx (MNIST): 4-byte magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the data
  in big-endian order. Images are type ``0x08`` (uint8) with 3 dims (magic 2051), labels uint8 with 1 dim (2049).
  ``.gz`` files are read as well.
* CIFAR-10 "python version": folder ``cifar-10-batches-py`` holding ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch``, each a pickled dict with ``b"data"`` (uint8 ``[n, 3072]``, channel-major 3x32x32 rows) and
  ``b"labels"`` (n ints), plus ``batches.meta`` (``b"label_names"``).
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surf.utils.errors import DataError

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
DATASETS = ("mnist", "cifar10")
_MNIST_EXPECTED = ", ".join(f for pair in MNIST_FILES.values() for f in pair) + " (or the same names + .gz)"
_CIFAR10_EXPECTED = f"{CIFAR10_FOLDER}/ with {', '.join(CIFAR10_TRAIN)}, {CIFAR10_TEST} and batches.meta"

# idx type byte -> big-endian NumPy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class ImageSplit:
    """One split: uint8 images ``[n, channels, height, width]`` and int64 labels ``[n]``."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ImageDataset:
    """A data set's official train and test splits and its class names."""

    name: str
    train: ImageSplit
    test: ImageSplit
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def read_dataset(name: str, root: str | Path) -> ImageDataset:
    """Read data set ``name`` (``mnist`` or ``cifar10``) from the local folder ``root``."""
    if name == "mnist":
        return read_mnist(root)
    if name == "cifar10":
        return read_cifar10(root)
    raise DataError(f"unknown image data set {name!r}; use one of {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------------------- MNIST (idx)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one idx file (optionally gzip-compressed) into an array in native byte order."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read idx file '{path}' ({exc}); re-download it from {MNIST_URL}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"'{path}' is not an idx file (bad magic number {raw[:4].hex() or 'empty'}); "
                        f"re-download it from {MNIST_URL}")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"idx file '{path}' is truncated inside its header; re-download it from {MNIST_URL}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"idx file '{path}' holds {len(raw) - header} data bytes but its header {dims} announces "
                        f"{expected}; the file is truncated or corrupt, re-download it from {MNIST_URL}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_path(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name.gz`` when only the compressed file is there."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST file '{name}' (or '{name}.gz') not found in '{root}'; the folder must hold "
                    f"{_MNIST_EXPECTED} from {MNIST_URL} (download them yourself; surf downloads nothing)")


def _mnist_split(root: Path, images_name: str, labels_name: str) -> ImageSplit:
    images_path, labels_path = _idx_path(root, images_name), _idx_path(root, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"'{images_path}' must hold uint8 images [n, rows, cols] (idx magic 2051), got "
                        f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"'{labels_path}' must hold uint8 labels [n] (idx magic 2049), got {labels.dtype} "
                        f"{labels.shape}")
    if labels.size != images.shape[0]:
        raise DataError(f"'{labels_path}' has {labels.size} labels but '{images_path}' has {images.shape[0]} images")
    if labels.size and labels.max() > 9:
        raise DataError(f"'{labels_path}' holds label {labels.max()}; MNIST labels are 0..9")
    return ImageSplit(images[:, None], labels.astype(np.int64))


def read_mnist(root: str | Path) -> ImageDataset:
    """MNIST from the four official idx files (``.gz`` or unpacked) in ``root``."""
    root = _existing_folder(root, "MNIST", _MNIST_EXPECTED, MNIST_URL)
    splits = {split: _mnist_split(root, *names) for split, names in MNIST_FILES.items()}
    return ImageDataset("mnist", splits["train"], splits["test"], tuple(str(d) for d in range(10)))


# ---------------------------------------------------------------------------------------------- CIFAR-10 (pickle)


def _unpickle(path: Path) -> dict:
    """Load one CIFAR-10 batch file.

    Security: ``pickle`` can execute code while loading; only read files you downloaded yourself from the official
    CIFAR-10 page. surf never fetches these files.
    """
    try:
        with open(path, "rb") as handle:
            content = pickle.load(handle, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise DataError(f"cannot unpickle CIFAR-10 file '{path}' ({type(exc).__name__}); re-download the python "
                        f"version from {CIFAR10_URL}") from None
    if not isinstance(content, dict):
        raise DataError(f"CIFAR-10 file '{path}' does not hold a dict; re-download the python version from "
                        f"{CIFAR10_URL}")
    return content


def _cifar_batch(path: Path) -> ImageSplit:
    content = _unpickle(path)
    data, labels = content.get(b"data"), content.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"CIFAR-10 file '{path}': b'data' must be a uint8 array [n, 3072], got {shape}")
    try:
        labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"CIFAR-10 file '{path}': b'labels' must be a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise DataError(f"CIFAR-10 file '{path}': b'labels' must hold one label per image ({data.shape[0]}), got "
                        f"{labels.size}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10 file '{path}': labels must lie in 0..9")
    return ImageSplit(data.reshape(-1, 3, 32, 32), labels)


def cifar10_folder(root: str | Path) -> Path:
    """``root`` itself when it holds the batches, else ``root/cifar-10-batches-py``."""
    root = _existing_folder(root, "CIFAR-10", _CIFAR10_EXPECTED, CIFAR10_URL)
    if (root / CIFAR10_TEST).is_file() or not (root / CIFAR10_FOLDER).is_dir():
        return root
    return root / CIFAR10_FOLDER


def read_cifar10(root: str | Path) -> ImageDataset:
    """CIFAR-10 (python version) from ``root`` = the ``cifar-10-batches-py`` folder or its parent.

    The batches are pickles: only point this at files you downloaded yourself (see :func:`_unpickle`).
    """
    folder = cifar10_folder(root)
    for name in CIFAR10_TRAIN + (CIFAR10_TEST,):
        if not (folder / name).is_file():
            raise DataError(
                f"CIFAR-10 file '{name}' not found in '{folder}'; --root must be (the parent of) "
                f"{_CIFAR10_EXPECTED}, unpacked from cifar-10-python.tar.gz (python version) at {CIFAR10_URL} "
                "(download it yourself; surf downloads nothing)"
            )
    batches = [_cifar_batch(folder / name) for name in CIFAR10_TRAIN]
    train = ImageSplit(np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches]))
    test = _cifar_batch(folder / CIFAR10_TEST)
    names = tuple(str(d) for d in range(10))
    if (folder / "batches.meta").is_file():
        raw = _unpickle(folder / "batches.meta").get(b"label_names", [])
        if len(raw) == 10:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw)
    return ImageDataset("cifar10", train, test, names)


def _existing_folder(root: str | Path, name: str, expected: str, url: str) -> Path:
    """``root`` as a Path; a DataError naming the expected files and their source when it is not a folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{name} folder '{root}' does not exist; it must hold {expected} from {url} "
                        "(download them yourself; surf downloads nothing)")
    return root
