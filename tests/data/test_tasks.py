"""Task sampling: disjoint pools, no held-out leakage, keyed reproducibility, relabelling, partitions, sources."""

import numpy as np
import pytest
import torch

from surf.config import Config, DataConfig, validate
from surf.data.partition import PARTITIONS
from surf.data.sources import SOURCES, load_source
from surf.data.tasks import Task, TaskSampler
from surf.utils.errors import ConfigError, DataError


def make_sampler(num_agents: int = 20, seed: int = 0, **data: object) -> TaskSampler:
    return TaskSampler(validate(Config(seed=seed, num_agents=num_agents, data=DataConfig(**data))))


def class_shares(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Per-agent class shares (N, C) of labels (N, m)."""
    one_hot = np.eye(num_classes)[labels.numpy()]
    return one_hot.mean(1)


def test_registries_describe_every_choice():
    assert set(SOURCES) == {"digits", "gaussian", "npz"}
    assert set(PARTITIONS) == {"imbalanced", "dirichlet", "iid", "pathological"}


def test_pools_are_disjoint_stratified_and_cover_the_source():
    sampler = make_sampler()
    pools = {split: set(idx.tolist()) for split, idx in sampler.pool_indices.items()}
    assert not pools["train"] & pools["val"] and not pools["train"] & pools["test"] and not pools["val"] & pools["test"]
    assert len(pools["train"] | pools["val"] | pools["test"]) == 1797
    assert sampler.pool_sizes() == {split: len(idx) for split, idx in pools.items()}
    assert sampler.pool_sizes()["train"] == pytest.approx(0.6 * 1797, abs=10)
    labels = load_source(DataConfig(), 0).labels
    for idx in sampler.pool_indices.values():
        assert np.bincount(labels[idx], minlength=10).min() > 0


@pytest.mark.parametrize("partition", list(PARTITIONS))
def test_heldout_samples_never_in_training_and_rows_match_the_source(partition):
    sampler = make_sampler(num_agents=30, partition=partition)
    source = load_source(DataConfig(), 0)
    for split in ("train", "val", "test"):
        task = sampler.task(split, 5)
        train, test = task.train_index.numpy(), task.test_index.numpy()
        assert not set(train.ravel()) & set(test.ravel())
        assert set(train.ravel()) | set(test.ravel()) <= set(sampler.pool_indices[split].tolist())
        assert np.array_equal(task.y_train.numpy(), source.labels[train])
        assert np.array_equal(task.y_test.numpy(), source.labels[test])
        assert np.array_equal(task.x_test[..., :-1].numpy(), source.features[test])
        used = np.unique(train)
        assert np.array_equal(task.x_pool[:, :-1].numpy(), source.features[used])
        assert np.array_equal(task.y_pool.numpy(), source.labels[used])


def test_shapes_and_bias_column():
    sampler = make_sampler(num_agents=7, train_per_agent=11, test_per_agent=4)
    task = sampler.task("val", 0)
    assert task.x_train.shape == (7, 11, 65) and task.x_test.shape == (7, 4, 65)
    assert task.y_train.shape == (7, 11) and task.y_test.shape == (7, 4)
    assert task.x_train.dtype == torch.float32 and task.y_train.dtype == torch.int64
    assert (task.num_agents, task.num_features, task.num_classes) == (7, 65, 10)
    assert (sampler.num_agents, sampler.num_features, sampler.num_classes) == (7, 65, 10)
    for x in (task.x_train, task.x_test, task.x_pool):
        assert torch.all(x[..., -1] == 1.0)
    assert task.key == ("val", 0) and task.permutation is None


def test_same_key_same_task_in_a_fresh_sampler_and_other_keys_differ():
    a, b = make_sampler(partition="dirichlet"), make_sampler(partition="dirichlet")
    first, again = a.task("train", 3), b.task("train", 3)
    for name in ("x_train", "y_train", "x_test", "y_test", "x_pool", "y_pool", "train_index", "test_index"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not torch.equal(first.train_index, a.task("train", 4).train_index)
    assert not torch.equal(first.train_index, make_sampler(seed=1, partition="dirichlet").task("train", 3).train_index)
    assert torch.equal(a.relabel_permutation("test", 2), b.relabel_permutation("test", 2))


def test_relabelled_twin_maps_labels_and_keeps_features():
    sampler = make_sampler()
    task, twin = sampler.task("test", 1), sampler.task("test", 1, relabel=True)
    perm = sampler.relabel_permutation("test", 1)
    assert not torch.equal(perm, torch.arange(10)) and torch.equal(perm.sort().values, torch.arange(10))
    assert torch.equal(twin.permutation, perm) and twin.key == task.key
    for name in ("x_train", "x_test", "x_pool", "train_index", "test_index"):
        assert torch.equal(getattr(twin, name), getattr(task, name))
    for name in ("y_train", "y_test", "y_pool"):
        assert torch.equal(getattr(twin, name), perm[getattr(task, name)])
    second = torch.roll(torch.arange(10), 1)
    twice = twin.relabelled(second)
    assert torch.equal(twice.y_train, second[perm[task.y_train]]) and torch.equal(twice.permutation, second[perm])
    with pytest.raises(ValueError, match="permutation"):
        task.relabelled(torch.zeros(10, dtype=torch.int64))


def test_relabel_permutation_is_never_the_identity_even_for_two_classes():
    sampler = make_sampler(source="gaussian", gaussian_classes=2, gaussian_samples=200, gaussian_dim=4)
    for index in range(30):
        assert sampler.relabel_permutation("train", index).tolist() == [1, 0]


def test_imbalanced_same_proportions_across_agents_and_train_test_but_not_across_tasks():
    sampler = make_sampler(num_agents=400)
    task, other = sampler.task("train", 0), sampler.task("train", 1)
    shares = class_shares(task.y_train, 10)
    halves = shares[:200].mean(0), shares[200:].mean(0)
    assert np.abs(halves[0] - halves[1]).sum() < 0.05
    assert np.abs(shares.mean(0) - class_shares(task.y_test, 10).mean(0)).sum() < 0.05
    assert np.abs(shares.mean(0) - class_shares(other.y_train, 10).mean(0)).sum() > 0.1
    assert shares.mean(0).max() > 1.5 * shares.mean(0).min()  # imbalanced, not uniform


def test_iid_is_uniform():
    shares = class_shares(make_sampler(num_agents=200, partition="iid").task("train", 0).y_train, 10).mean(0)
    assert np.abs(shares - 0.1).max() < 0.01


def test_dirichlet_label_skew_follows_alpha_and_governs_train_and_heldout():
    skewed = make_sampler(num_agents=200, partition="dirichlet", dirichlet_alpha=0.1).task("train", 0)
    train_shares = class_shares(skewed.y_train, 10)
    assert train_shares.max(1).mean() > 0.6
    same_top = train_shares.argmax(1) == class_shares(skewed.y_test, 10).argmax(1)
    assert same_top.mean() > 0.8
    flat = make_sampler(num_agents=200, partition="dirichlet", dirichlet_alpha=100.0).task("train", 0)
    assert class_shares(flat.y_train, 10).max(1).mean() < 0.25


@pytest.mark.parametrize("classes", [1, 2, 3])
def test_pathological_agents_see_at_most_c_classes_evenly(classes):
    task = make_sampler(num_agents=50, partition="pathological", classes_per_agent=classes).task("train", 0)
    for train, test in zip(task.y_train, task.y_test, strict=True):
        seen = set(train.tolist()) | set(test.tolist())
        assert len(seen) <= classes
        counts = torch.bincount(train, minlength=10)
        assert counts[counts > 0].max() - counts[counts > 0].min() <= 1


def test_gaussian_source_is_fixed_per_seed_and_roughly_linearly_separable():
    cfg = DataConfig(source="gaussian")
    a, b = load_source(cfg, 0), load_source(cfg, 0)
    assert np.array_equal(a.features, b.features) and not np.array_equal(a.features, load_source(cfg, 1).features)
    assert a.features.shape == (6000, 64) and a.features.dtype == np.float32 and a.num_classes == 10
    sampler = make_sampler(source="gaussian")
    train, test = sampler.pool_indices["train"], sampler.pool_indices["test"]
    x = np.concatenate([a.features, np.ones((6000, 1), np.float32)], axis=1).astype(np.float64)
    one_hot = np.eye(10)[a.labels[train]]
    weights = np.zeros((65, 10))
    for _ in range(300):  # full-batch gradient descent on the multinomial logistic loss (numpy: no thread contention)
        logits = x[train] @ weights
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        weights -= 0.5 * x[train].T @ (probs - one_hot) / len(train)
    accuracy = ((x[test] @ weights).argmax(1) == a.labels[test]).mean()
    assert accuracy > 0.7


def write_npz(path, test_split=True, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"features": rng.standard_normal((200, 5)) * 3 + 7, "labels": np.arange(200) % 4}
    if test_split:
        arrays.update(test_features=rng.standard_normal((80, 5)), test_labels=np.arange(80) % 4)
    arrays.update(overrides)
    np.savez(path, **arrays)
    return arrays


def test_npz_round_trip_with_predefined_test_split_and_standardization(tmp_path):
    path = tmp_path / "feats.npz"
    arrays = write_npz(path)
    sampler = make_sampler(source="npz", path=str(path), standardize=True, train_per_agent=6, test_per_agent=3)
    assert sampler.pool_indices["test"].tolist() == list(range(200, 280))
    sizes = sampler.pool_sizes()
    assert sizes["test"] == 80 and sizes["train"] + sizes["val"] == 200 and abs(sizes["train"] - 150) <= 4
    assert (sampler.num_features, sampler.num_classes) == (6, 4)
    rows = np.concatenate([arrays["features"], arrays["test_features"]])
    reference = rows[sampler.pool_indices["train"]]
    expected = (rows - reference.mean(0)) / reference.std(0)
    task = sampler.task("test", 0)
    assert task.test_index.min() >= 200
    assert np.allclose(task.x_train[..., :-1].numpy(), expected[task.train_index.numpy()], atol=1e-5)
    plain = make_sampler(source="npz", path=str(path)).task("train", 0)
    assert np.allclose(plain.x_train[..., :-1].numpy(), arrays["features"][plain.train_index.numpy()])


def test_npz_accepts_x_y_keys(tmp_path):
    path = tmp_path / "xy.npz"
    np.savez(path, x=np.ones((40, 3)), y=np.arange(40) % 2)
    source = load_source(DataConfig(source="npz", path=str(path)), 0)
    assert source.features.shape == (40, 3) and source.num_classes == 2 and source.test_features is None


def test_missing_npz_file_is_a_data_error():
    with pytest.raises(DataError, match="data file 'nowhere.npz' not found; build features with `surf features`"):
        make_sampler(source="npz", path="nowhere.npz")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": np.ones(200)}, "features must be a non-empty 2-D array"),
        ({"labels": np.arange(199) % 4}, "labels must be 1-D with one label per row"),
        ({"features": np.full((200, 5), np.nan)}, "NaN"),
        ({"labels": np.arange(200) % 4 - 1}, r"labels must be integers in 0\.\.C-1"),
        ({"labels": np.arange(200) % 4 + 0.5}, r"labels must be integers in 0\.\.C-1"),
        ({"test_features": np.ones((80, 2))}, "test_features have 2 columns"),
        ({"num_classes": 3}, r"labels must lie in 0\.\.2"),
    ],
)
def test_malformed_npz_is_a_one_line_data_error(tmp_path, overrides, message):
    path = tmp_path / "bad.npz"
    write_npz(path, **overrides)
    with pytest.raises(DataError, match=message) as info:
        load_source(DataConfig(source="npz", path=str(path)), 0)
    assert "\n" not in str(info.value)


def test_npz_without_feature_arrays(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, other=np.ones(3))
    with pytest.raises(DataError, match="no 'features'/'labels'"):
        load_source(DataConfig(source="npz", path=str(path)), 0)


def test_size_and_choice_checks():
    with pytest.raises(DataError, match="pool has .* fewer than 2 x 10 classes"):
        make_sampler(source="gaussian", gaussian_samples=40)
    with pytest.raises(ConfigError, match="classes_per_agent"):
        make_sampler(partition="pathological", classes_per_agent=11)
    cfg = Config()
    cfg.data.partition = "sorted"
    with pytest.raises(ConfigError, match="imbalanced, dirichlet, iid, pathological"):
        TaskSampler(cfg)
    cfg = Config()
    cfg.data.train_per_agent = 0
    with pytest.raises(ConfigError, match="train_per_agent"):
        TaskSampler(cfg)
    assert make_sampler(batch_size=50, train_per_agent=5).task("train", 0).x_train.shape[1] == 5


def test_to_device_keeps_every_tensor():
    task = make_sampler().task("train", 0, relabel=True)
    moved = task.to("cpu")
    assert isinstance(moved, Task) and torch.equal(moved.y_train, task.y_train)
    assert torch.equal(moved.permutation, task.permutation) and moved.key == task.key


def test_ten_thousand_agents_build():
    task = make_sampler(num_agents=10_000, train_per_agent=45, test_per_agent=15).task("train", 0)
    assert task.x_train.shape == (10_000, 45, 65) and task.y_test.shape == (10_000, 15)
