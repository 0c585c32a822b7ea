"""Image readers on tiny fake files in the exact official formats, the feature extractor and `surf features`."""

import gzip
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surf.app.cli import main
from surf.data.backbones import resnet18, small_cnn
from surf.data.features import FeatureSettings, augment, build_features, read_metadata
from surf.data.images import read_cifar10, read_idx, read_mnist
from surf.data.sources import load_npz
from surf.utils.errors import ConfigError, DataError
from tests.conftest import TINY_DROPS

REPO = Path(__file__).resolve().parents[2]


def fake_images(n, channels, size, seed):
    """uint8 images whose class (i % 10) is a bright square at a class-specific position, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, (n, channels, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = 4 + 6 * (label // 4), 4 + 6 * (label % 4)
        images[i, :, row:row + 5, col:col + 5] = 250
    return images, labels.astype(np.uint8)


def idx_bytes(array, type_code=0x08, dtype=">u1"):
    return bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(dtype).tobytes()


def write_mnist(folder, n_train=80, n_test=40, compress=False):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = fake_images(n, 1, 28, seed)
        arrays[prefix] = (images, labels)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images[:, 0]), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return arrays


def write_cifar(parent, n_per_batch=12, n_test=24):
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = fake_images(n_test if name == "test_batch" else n_per_batch, 3, 32, 10 + i)
        batches[name] = (images, labels)
        content = {b"batch_label": name.encode(), b"data": images.reshape(len(images), 3072),
                   b"labels": labels.tolist(), b"filenames": [b"x.png"] * len(images)}
        (folder / name).write_bytes(pickle.dumps(content))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}))
    return folder, batches


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reader_returns_exact_arrays(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress=compress)
    data = read_mnist(tmp_path)
    assert data.train.images.shape == (80, 1, 28, 28) and data.test.images.shape == (40, 1, 28, 28)
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64
    np.testing.assert_array_equal(data.train.images, arrays["train"][0])
    np.testing.assert_array_equal(data.test.labels, arrays["t10k"][1])
    assert data.num_classes == 10


def test_idx_parses_big_endian_types(tmp_path):
    values = np.array([[1, -2, 300], [70000, 5, -1]], dtype=np.int64)
    (tmp_path / "a.idx").write_bytes(idx_bytes(values, 0x0C, ">i4"))
    parsed = read_idx(tmp_path / "a.idx")
    assert parsed.shape == (2, 3) and parsed.dtype == np.dtype("int32")
    np.testing.assert_array_equal(parsed, values)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: b"\x01\x02" + raw[2:], "bad magic number"),
        (lambda raw: raw[:-10], "truncated or corrupt"),
        (lambda raw: raw[:6], "truncated inside its header"),
    ],
)
def test_corrupt_idx_is_a_data_error_naming_the_file(tmp_path, damage, message):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message) as info:
        read_mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value) and "\n" not in str(info.value)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    write_mnist(tmp_path, compress=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[:12] + bytes(b ^ 0xFF for b in raw[12:40]) + raw[40:])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        read_mnist(tmp_path)


def test_mnist_label_count_mismatch_and_missing_files(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(39, np.uint8)))
    with pytest.raises(DataError, match="39 labels"):
        read_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*yann.lecun.com.*downloads nothing"):
        read_mnist(tmp_path)
    with pytest.raises(DataError, match="does not exist.*train-images-idx3-ubyte"):
        read_mnist(tmp_path / "nowhere")


@pytest.mark.parametrize("use_parent", [True, False])
def test_cifar_reader_accepts_folder_or_parent(tmp_path, use_parent):
    folder, batches = write_cifar(tmp_path)
    data = read_cifar10(tmp_path if use_parent else folder)
    assert data.train.images.shape == (60, 3, 32, 32) and data.test.images.shape == (24, 3, 32, 32)
    np.testing.assert_array_equal(data.train.images[12:24], batches["data_batch_2"][0])
    flat = batches["test_batch"][0].reshape(24, 3072)
    assert data.test.images[5, 2, 7, 9] == flat[5, 2 * 1024 + 7 * 32 + 9]  # channel-major rows
    np.testing.assert_array_equal(data.test.labels, batches["test_batch"][1])
    assert data.class_names[0] == "airplane" and data.class_names[9] == "truck"


def test_cifar_errors_name_the_file(tmp_path):
    folder, _ = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3.*cs.toronto.edu"):
        read_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(DataError, match=r"data_batch_3.*\[n, 3072\]"):
        read_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", 1]}))
    with pytest.raises(DataError, match="list of integers"):
        read_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch.*cifar-10-python.tar.gz.*downloads nothing"):
        read_cifar10(tmp_path)


def test_augment_is_a_padded_crop_or_its_mirror_and_keyed():
    images = torch.arange(2 * 36, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = augment(images, torch.Generator().manual_seed(3), pad=1)
    again = augment(images, torch.Generator().manual_seed(3), pad=1)
    assert torch.equal(out, again) and out.shape == images.shape
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for i in range(2):
        crops = [padded[i, :, r:r + 6, c:c + 6] for r in range(3) for c in range(3)]
        assert any(torch.equal(out[i], crop) or torch.equal(out[i], crop.flip(-1)) for crop in crops)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_backbones_give_fixed_width_features(channels, size):
    x = torch.rand(2, channels, size, size)
    big, small = resnet18(channels, 10).eval(), small_cnn(channels, 10).eval()
    assert big.features(x).shape == (2, 512) and big(x).shape == (2, 10)
    assert small.features(x).shape == (2, 128) and small(x).shape == (2, 10)


def test_features_file_feeds_a_tiny_surf_run(tmp_path):
    write_mnist(tmp_path / "mnist")
    out = tmp_path / "mnist_small.npz"
    settings = FeatureSettings("mnist", "small", epochs=1, batch_size=16, seed=0)
    meta = build_features(settings, tmp_path / "mnist", out, torch.device("cpu"), progress=False)
    assert not meta["reused"] and meta["feature_dim"] == 128 and meta["train_images"] == 80
    source = load_npz(out)
    assert source.features.shape == (80, 128) and source.test_features.shape == (40, 128)
    assert source.num_classes == 10 and np.isfinite(source.features).all()
    np.testing.assert_array_equal(source.test_labels, np.arange(40) % 10)
    assert 0.0 <= read_metadata(out)["extractor_test_accuracy"] <= 1.0
    stamp = out.stat().st_mtime_ns
    assert build_features(settings, tmp_path / "mnist", out, torch.device("cpu"), progress=False)["reused"]
    assert out.stat().st_mtime_ns == stamp  # cache hit: nothing rewritten
    args = ["run", str(REPO / "simulations" / "quickstart.yaml"), "--out", str(tmp_path / "run"), "--quiet"]
    for item in ["num_agents=4", "topology.name=ring", "data.source=npz", f"data.path={out}", "data.standardize=true",
                 "data.train_per_agent=6", "data.test_per_agent=3", "data.batch_size=3", "model.layers=2",
                 "model.hops=1", "model.hidden=4", "trainer.steps=2", "trainer.val_every=1", "trainer.val_tasks=1",
                 "eval.test_tasks=1", "eval.dgd_steps=[0.1]", "eval.momentum_grid=[0.5]", "eval.long_factor=2",
                 TINY_DROPS]:
        args += ["-o", item]
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["per_layer"]["accuracy"]) == 3


def test_extractor_learns_and_same_seed_same_features(tmp_path):
    write_cifar(tmp_path)
    settings = FeatureSettings("cifar10", "small", epochs=10, batch_size=10, lr=0.05, seed=1)
    first = build_features(settings, tmp_path, tmp_path / "a.npz", torch.device("cpu"), progress=False)
    build_features(settings, tmp_path, tmp_path / "b.npz", torch.device("cpu"), progress=False)
    a, b = load_npz(tmp_path / "a.npz"), load_npz(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.test_features, b.test_features)
    assert first["augment"] and first["extractor_train_accuracy"] > 0.25  # 10 classes: chance 0.1
    limited = FeatureSettings("cifar10", "small", epochs=1, batch_size=20, limit=30, seed=1)
    meta = build_features(limited, tmp_path, tmp_path / "a.npz", torch.device("cpu"), progress=False)
    assert meta["train_images"] == 30 and load_npz(tmp_path / "a.npz").features.shape == (30, 128)
    with pytest.raises(ConfigError, match="--limit"):
        FeatureSettings("cifar10", limit=1).validate()


def test_cli_features_missing_root_is_one_line_exit_2(tmp_path):
    cmd = [sys.executable, "-m", "surf.app.cli", "features", "--dataset", "cifar10", "--root", str(tmp_path / "none"),
           "--out", str(tmp_path / "f.npz")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cifar-10-batches-py" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "f.npz").exists()


def test_cli_features_builds_then_reuses(tmp_path, capsys):
    write_mnist(tmp_path / "m", n_train=24, n_test=20)
    args = ["features", "--dataset", "mnist", "--root", str(tmp_path / "m"), "--out", str(tmp_path / "f.npz"),
            "--arch", "small", "--epochs", "1", "--batch-size", "8", "--quiet", "--device", "cpu"]
    assert main(args) == 0 and "written" in capsys.readouterr().out
    assert main(args) == 0 and "reused" in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "code", "message"), [
    (["--lr", "nan"], 2, "--lr nan must be a positive finite number"),  # nan and inf trained and wrote NaN features
    (["--lr", "inf"], 2, "--lr inf must be a positive finite number"),
    (["--epochs", "0"], 2, "--epochs 0 must be >= 1"),
    (["--threads", "-1"], 2, "--threads -1 must be in [0, 1024]"),
    (["--lr", "1e30"], 1, "non-finite"),  # diverges: exit 1 with the hint (lower --lr), as surf run
])
def test_cli_features_bad_values_are_one_line_and_write_nothing(tmp_path, capsys, flags, code, message):
    write_mnist(tmp_path / "m", n_train=24, n_test=20)
    args = ["features", "--dataset", "mnist", "--root", str(tmp_path / "m"), "--out", str(tmp_path / "f.npz"),
            "--arch", "small", "--epochs", "1", "--batch-size", "8", "--quiet", "--device", "cpu", *flags]
    assert main(args) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and ("lower --lr" in err[0]) == (code == 1), err
    assert not (tmp_path / "f.npz").exists()
