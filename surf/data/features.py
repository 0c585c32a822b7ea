"""Image features for the agents' softmax regression: train a CNN on a data set's train split, then extract features.

Pipeline (``surf features --dataset cifar10 --root DIR``):

1. read the official train/test files (:mod:`surf.data.images`);
2. train a backbone (:mod:`surf.backbones`) with cross-entropy on the **train split only** (SGD, Nesterov momentum,
   cosine learning rate; CIFAR-10 adds random 4-pixel-padded crops and horizontal flips);
3. extract features of the train and test splits with the network in eval mode (BatchNorm running statistics, so a
   sample's features do not depend on its batch; the authors' code left the frozen ResNet in train mode);
4. write ``features``/``labels``/``test_features``/``test_labels``/``num_classes`` plus a JSON ``metadata`` string
   to an ``.npz`` that ``data.source=npz`` reads, the test split becoming the meta-test pool.

The test split's features come from a network that never saw a test image; its labels are used only to report the
extractor's own test accuracy. Every random draw (initialisation, order, augmentation, ``--limit`` subset) is keyed
by the seed and what it is for. An existing ``.npz`` built with the same settings is reused.
"""

from __future__ import annotations

import json
import math
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from surf.data.backbones import ARCHS, Backbone
from surf.data.images import DATASETS, ImageDataset, ImageSplit, read_dataset
from surf.utils.errors import ConfigError, TrainingError
from surf.utils.seeding import derive_seed, numpy_generator, torch_generator

FORMAT = 1  # bump when the cached arrays or the training recipe change
EXTRACT_BATCH = 512
CPU_NOTE_IMAGES = 5000  # warn about CPU time when training ResNet-18 on more images than this


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that determines the features; a cached ``.npz`` is reused only when all of it matches."""

    dataset: str
    arch: str = "resnet18"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    limit: int | None = None  # train on (and extract) only this many training images, a keyed random subset
    seed: int = 0

    def validate(self) -> None:
        """One-line ConfigError for impossible values."""
        if self.dataset not in DATASETS:
            raise ConfigError(f"--dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"--arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        for flag, value, least in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 2)):
            if value < least:
                raise ConfigError(f"{flag} {value} must be >= {least}")
        if not (math.isfinite(self.lr) and self.lr > 0):  # nan and inf trained and wrote NaN features
            raise ConfigError(f"--lr {self.lr} must be a positive finite number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay={self.weight_decay} must be a finite number >= 0")
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"--limit {self.limit} must be >= 2 training images")


def build_features(settings: FeatureSettings, root: str | Path, out: str | Path, device: torch.device,
                   progress: bool = True, force: bool = False) -> dict:
    """Build (or reuse) the feature file ``out``; returns its metadata (``reused`` tells which)."""
    settings.validate()
    out = Path(out)
    if not force and (cached := read_metadata(out)) is not None and cached.get("settings") == _settings_key(settings):
        return {**cached, "reused": True}
    data = read_dataset(settings.dataset, root)
    train = _subset(data.train, settings.limit, settings.seed)
    if progress and device.type == "cpu" and settings.arch == "resnet18" and train.labels.size > CPU_NOTE_IMAGES:
        print(f"surf: note: ResNet-18 on a CPU trains at roughly 0.2 s per image per epoch on 2 cores "
              f"({train.labels.size} images); --arch small or --limit N is much faster", file=sys.stderr)
    start = time.perf_counter()
    model, mean, std, loss = train_extractor(settings, data, train, device, progress)
    train_features, train_accuracy = extract(model, train, mean, std, device)
    test_features, test_accuracy = extract(model, data.test, mean, std, device)
    if not (np.isfinite(train_features).all() and np.isfinite(test_features).all()):
        raise TrainingError(f"the trained extractor gives non-finite features; lower --lr (now {settings.lr:g}); "
                            "nothing was written")
    metadata = {
        "format": FORMAT, "settings": _settings_key(settings), "root": str(Path(root).expanduser().resolve()),
        "feature_dim": model.feature_dim, "train_images": int(train.labels.size),
        "test_images": int(data.test.labels.size), "class_names": list(data.class_names),
        "augment": settings.dataset == "cifar10", "normalize_mean": mean.flatten().tolist(),
        "normalize_std": std.flatten().tolist(), "final_train_loss": loss,
        "extractor_train_accuracy": train_accuracy, "extractor_test_accuracy": test_accuracy,
        "seconds": round(time.perf_counter() - start, 1), "device": str(device), "torch": torch.__version__,
        "note": "test features come from a network trained on the train split only (eval-mode BatchNorm)",
    }
    _write_npz(out, train_features, train.labels, test_features, data.test.labels, data.num_classes, metadata)
    return {**metadata, "reused": False}


def train_extractor(settings: FeatureSettings, data: ImageDataset, train: ImageSplit, device: torch.device,
                    progress: bool = True) -> tuple[Backbone, torch.Tensor, torch.Tensor, float]:
    """Train ``settings.arch`` with cross-entropy on ``train``; returns the model (eval mode), the per-channel
    normalisation mean/std (of ``train``) and the last epoch's mean training loss."""
    mean, std = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)
                 for v in _channel_stats(train.images))
    images = torch.from_numpy(train.images).to(device)
    labels = torch.from_numpy(train.labels).to(device)
    with torch.random.fork_rng(devices=[]):  # initialisation keyed by the seed, global RNG left untouched
        torch.manual_seed(derive_seed(settings.seed, "features", "init"))
        model = ARCHS[settings.arch](images.shape[1], data.num_classes)
    model.to(device).train()
    n, size = labels.numel(), settings.batch_size
    batches = [(i, min(i + size, n)) for i in range(0, n, size) if min(i + size, n) - i >= 2]  # BN needs 2 rows
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, nesterov=True,
                                weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * len(batches))
    bar = tqdm(total=settings.epochs * len(batches), desc=f"training {settings.arch} on {settings.dataset}",
               unit="batch", disable=not progress)
    loss_sum = 0.0
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=torch_generator(settings.seed, "features", "order", epoch)).to(device)
        loss_sum = 0.0
        for b, (lo, hi) in enumerate(batches):
            index = order[lo:hi]
            x = images[index].float() / 255.0
            if settings.dataset == "cifar10":
                x = augment(x, torch_generator(settings.seed, "features", "augment", epoch, b))
            loss = F.cross_entropy(model((x - mean) / std), labels[index])
            if not torch.isfinite(loss):  # a diverged extractor would write non-finite features
                raise TrainingError(f"non-finite training loss at epoch {epoch + 1}, batch {b + 1}; lower --lr "
                                    f"(now {settings.lr:g}); nothing was written")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * (hi - lo)
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}")
    bar.close()
    return model.eval(), mean, std, loss_sum / max(sum(hi - lo for lo, hi in batches), 1)


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel zero-padded crop and random horizontal flip of every image ``[n, c, h, w]``."""
    n, _, h, w = images.shape
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).to(images.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = shifts[:, :1] + torch.arange(h, device=images.device)  # [n, h]
    cols = shifts[:, 1:] + torch.arange(w, device=images.device)  # [n, w]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


@torch.no_grad()
def extract(model: Backbone, split: ImageSplit, mean: torch.Tensor, std: torch.Tensor,
            device: torch.device) -> tuple[np.ndarray, float]:
    """Features ``[n, feature_dim]`` (float32) of every image in eval mode, and the head's accuracy on ``split``."""
    model.eval()
    features, correct = [], 0
    for lo in range(0, split.labels.size, EXTRACT_BATCH):
        x = torch.from_numpy(split.images[lo:lo + EXTRACT_BATCH]).to(device).float() / 255.0
        feats = model.features((x - mean) / std)
        correct += int((model.head(feats).argmax(1).cpu().numpy() == split.labels[lo:lo + EXTRACT_BATCH]).sum())
        features.append(feats.float().cpu().numpy())
    return np.concatenate(features).astype(np.float32), correct / max(split.labels.size, 1)


def read_metadata(path: str | Path) -> dict | None:
    """The ``metadata`` dict of a feature file written by :func:`build_features`; None if absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(str(archive["metadata"][()])) if "metadata" in archive.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def default_out(root: Path, settings: FeatureSettings) -> Path:
    """``root/features/<dataset>_<arch>.npz``."""
    return root / "features" / f"{settings.dataset}_{settings.arch}.npz"


def _settings_key(settings: FeatureSettings) -> dict:
    return {"format": FORMAT, **asdict(settings)}


def _subset(split: ImageSplit, limit: int | None, seed: int) -> ImageSplit:
    """A keyed random subset of ``limit`` images (all when ``limit`` is None or not smaller)."""
    if limit is None or limit >= split.labels.size:
        return split
    keep = np.sort(numpy_generator(seed, "features", "limit").permutation(split.labels.size)[:limit])
    return ImageSplit(split.images[keep], split.labels[keep])


def _channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images ``[n, c, h, w]`` scaled to [0, 1] (float64 sums over chunks)."""
    total, squares = np.zeros(images.shape[1]), np.zeros(images.shape[1])
    for lo in range(0, images.shape[0], chunk):
        x = images[lo:lo + chunk].astype(np.float64) / 255.0
        total += x.sum((0, 2, 3))
        squares += np.square(x).sum((0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 1e-6))


def _write_npz(out: Path, features: np.ndarray, labels: np.ndarray, test_features: np.ndarray,
               test_labels: np.ndarray, num_classes: int, metadata: dict) -> None:
    """Write the feature file atomically (a temporary file renamed into place)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, features=features, labels=labels, test_features=test_features, test_labels=test_labels,
                 num_classes=np.int64(num_classes), metadata=np.array(json.dumps(metadata)))
    tmp.replace(out)
