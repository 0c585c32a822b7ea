"""Tasks: one decentralized ERM problem each, drawn reproducibly from disjoint meta-train / val / meta-test pools.

Honesty rules enforced here:

* the source's rows are split once (stratified, keyed by ``(seed, "pools")``) into three disjoint pools; a
  predefined test split (``.npz`` ``test_features``) is the whole meta-test pool and the rest is split train/val;
* each task splits its pool at random into a *train part* and a *held-out part* (``data.heldout_fraction``,
  stratified by class) and draws agents' training samples (with replacement) only from the train part and their
  held-out samples only from the held-out part, so no held-out sample is ever seen in training;
* a task is keyed by ``(seed, "task", split, index)`` and its relabelled twin by ``(seed, "relabel", split, index)``,
  so any process rebuilds the same task from its key alone.

Class availability: a class with fewer than 2 samples in a pool cannot sit in both parts of a task, so the
partitions only ever see the classes present in both parts (their probabilities are renormalized over those).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from surf.config import Config
from surf.data.partition import PARTITIONS, SHARED, class_probabilities, draw_labels
from surf.data.sources import SOURCES, Source, load_source, zscore
from surf.utils.errors import ConfigError, DataError
from surf.utils.replicas import check_fits
from surf.utils.seeding import numpy_generator

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Task:
    """One task: per-agent training and held-out samples (features carry a trailing bias column of ones)."""

    key: tuple  # (split, index)
    x_train: torch.Tensor  # (N, m_train, d+1) float32
    y_train: torch.Tensor  # (N, m_train) int64
    x_test: torch.Tensor  # (N, m_test, d+1) float32
    y_test: torch.Tensor  # (N, m_test) int64
    num_classes: int
    x_pool: torch.Tensor  # (n_pool, d+1): the distinct train-part samples the agents' training data came from
    y_pool: torch.Tensor  # (n_pool,)
    permutation: torch.Tensor | None = None  # class map applied (y_new = permutation[y_old]); None = original
    train_index: torch.Tensor | None = None  # (N, m_train) int64 source row of every training sample (auditing)
    test_index: torch.Tensor | None = None  # (N, m_test) int64 source row of every held-out sample
    agents: torch.Tensor | None = None  # global ids of the rows when the task holds only some agents (a node's share)

    @property
    def num_agents(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_tasks(self) -> int:
        """One task (a :class:`TaskBatch` holds several)."""
        return 1

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[-1])

    def relabelled(self, permutation: torch.Tensor) -> Task:
        """A copy with every label ``y`` mapped to ``permutation[y]`` (composed with any earlier permutation)."""
        permutation = torch.as_tensor(permutation, dtype=torch.int64)
        if permutation.shape != (self.num_classes,) or not torch.equal(
            permutation.sort().values.cpu(), torch.arange(self.num_classes)
        ):
            raise ValueError(f"permutation must be a permutation of 0..{self.num_classes - 1}")
        permutation = permutation.to(self.y_train.device)
        composed = permutation if self.permutation is None else permutation[self.permutation]
        return dataclasses.replace(
            self,
            y_train=permutation[self.y_train],
            y_test=permutation[self.y_test],
            y_pool=permutation[self.y_pool],
            permutation=composed,
        )

    def select(self, agents: torch.Tensor) -> Task:
        """The share of agents ``agents`` (global ids, rows of this full task): their samples only; keyed per-agent
        draws (``surf.data.batches``) give them exactly the numbers they get in the full task."""
        agents = torch.as_tensor(agents, dtype=torch.int64)
        names = ("x_train", "y_train", "x_test", "y_test", "train_index", "test_index")
        rows = {name: getattr(self, name)[agents] for name in names if getattr(self, name) is not None}
        return dataclasses.replace(self, **rows, agents=agents)

    def to(self, device: torch.device | str) -> Task:
        """A copy with every tensor on ``device``."""
        moved = {
            f.name: value.to(device)
            for f in dataclasses.fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


@dataclass
class TaskBatch:
    """T tasks of N agents each side by side as one problem of T N agents — task t's agents are the rows
    t N .. (t+1) N - 1 — so that one unroll, with one batched product per operation, replaces a loop over tasks
    (``trainer.tasks_per_step > 1``). Agents never interact across tasks: the graph is block-diagonal. Keyed draws
    (W_0, mini-batches) stay those of each task (``surf.data.batches``)."""

    parts: list[Task]

    def __post_init__(self) -> None:
        sizes = {part.num_agents for part in self.parts}
        if len(sizes) != 1:
            raise ValueError(f"a task batch needs tasks of equal size, got {sorted(sizes)} agents")
        for name in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, name, torch.cat([getattr(part, name) for part in self.parts]))

    @property
    def key(self) -> tuple:
        return ("batch", *(part.key for part in self.parts))

    @property
    def num_tasks(self) -> int:
        return len(self.parts)

    @property
    def num_agents(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_features(self) -> int:
        return self.parts[0].num_features

    @property
    def num_classes(self) -> int:
        return self.parts[0].num_classes


class TaskSampler:
    """Builds tasks for ``cfg``: loads the source, splits it into disjoint pools and validates the sizes."""

    def __init__(self, cfg: Config) -> None:
        data = cfg.data
        if data.source not in SOURCES:
            raise ConfigError(f"data.source={data.source!r} is not one of {', '.join(SOURCES)}")
        if data.partition not in PARTITIONS:
            raise ConfigError(f"data.partition={data.partition!r} is not one of {', '.join(PARTITIONS)}")
        for key in ("train_per_agent", "test_per_agent"):
            if getattr(data, key) < 1:
                raise ConfigError(f"data.{key}={getattr(data, key)} must be >= 1")
        if cfg.num_agents < 1:
            raise ConfigError(f"num_agents={cfg.num_agents} must be >= 1")
        if not 0.0 < data.heldout_fraction < 1.0:
            raise ConfigError(f"data.heldout_fraction={data.heldout_fraction} must be in (0, 1)")
        self.cfg = cfg
        source = load_source(data, cfg.seed)
        self.num_classes = source.num_classes
        if data.partition == "pathological" and not 1 <= data.classes_per_agent <= self.num_classes:
            raise ConfigError(
                f"data.classes_per_agent={data.classes_per_agent} must be in 1..{self.num_classes} (the class count)"
            )
        features, labels, self.pool_indices = _split_pools(source, data.pool_fractions, cfg.seed)
        for i, split in enumerate(SPLITS):
            size = self.pool_indices[split].size
            if size < 2 * self.num_classes:
                raise DataError(
                    f"the {split} pool has {size} samples, fewer than 2 x {self.num_classes} classes; use a larger "
                    f"data set or raise data.pool_fractions[{i}]"
                )
        if data.standardize:
            features = zscore(features, self.pool_indices["train"])
        self._labels = labels
        self._x = torch.from_numpy(np.concatenate([features, np.ones((len(features), 1), np.float32)], axis=1))
        self._y = torch.from_numpy(labels)
        self._available = {
            split: np.bincount(labels[idx], minlength=self.num_classes) >= 2 for split, idx in self.pool_indices.items()
        }
        if data.classes is not None:  # a class split: tasks draw only these classes
            if len(set(data.classes)) < 2 or not all(0 <= c < self.num_classes for c in data.classes):
                raise ConfigError(f"data.classes={data.classes} must list at least 2 distinct classes in "
                                  f"0..{self.num_classes - 1}")
            allowed = np.isin(np.arange(self.num_classes), data.classes)
            self._available = {split: available & allowed for split, available in self._available.items()}
        self.num_features = int(self._x.shape[1])
        samples = cfg.num_agents * max(data.train_per_agent + data.test_per_agent, data.batch_size)
        check_fits(4 * samples * self.num_features, "one task's samples")  # x of every agent, or a mini-batch's
        self.num_agents = cfg.num_agents

    def pool_sizes(self) -> dict[str, int]:
        """Samples in each of the disjoint meta-train / val / meta-test pools."""
        return {split: int(idx.size) for split, idx in self.pool_indices.items()}

    def task(self, split: str, index: int, relabel: bool = False) -> Task:
        """Task ``index`` of ``split`` (``relabel``: its twin with labels mapped by :meth:`relabel_permutation`)."""
        if split not in self.pool_indices:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        data, index = self.cfg.data, int(index)
        rng = numpy_generator(self.cfg.seed, "task", split, index)
        pool = self.pool_indices[split]
        heldout = _stratified_heldout(rng, self._labels[pool], self.num_classes, data.heldout_fraction)
        train_part, test_part = pool[~heldout], pool[heldout]
        probs = class_probabilities(
            data.partition,
            rng,
            self.num_agents,
            self._available[split],
            alpha=data.dirichlet_alpha,
            classes_per_agent=data.classes_per_agent,
        )
        shared = data.partition in SHARED
        y_train = draw_labels(rng, probs, data.train_per_agent, shared)
        y_test = draw_labels(rng, probs, data.test_per_agent, shared)
        train_rows = self._pick(rng, train_part, y_train)
        train_index, test_index = torch.from_numpy(train_rows), torch.from_numpy(self._pick(rng, test_part, y_test))
        used = torch.from_numpy(np.flatnonzero(np.bincount(train_rows.ravel(), minlength=self._labels.size)))
        task = Task(
            key=(split, index),
            x_train=self._x[train_index],
            y_train=self._y[train_index],
            x_test=self._x[test_index],
            y_test=self._y[test_index],
            num_classes=self.num_classes,
            x_pool=self._x[used],
            y_pool=self._y[used],
            train_index=train_index,
            test_index=test_index,
        )
        return task.relabelled(self.relabel_permutation(split, index)) if relabel else task

    def relabel_permutation(self, split: str, index: int) -> torch.Tensor:
        """The task's fixed random class permutation, keyed by ``(seed, "relabel", split, index)``; never the
        identity (redrawn until it moves a class)."""
        rng = numpy_generator(self.cfg.seed, "relabel", split, int(index))
        identity = np.arange(self.num_classes)
        while True:
            permutation = rng.permutation(self.num_classes)
            if not np.array_equal(permutation, identity):
                return torch.from_numpy(permutation.astype(np.int64))

    def _pick(self, rng: np.random.Generator, part: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """For every drawn label, a uniformly random source row of that class from ``part`` (with replacement)."""
        part_labels = self._labels[part]
        ordered = part[np.argsort(part_labels, kind="stable")]
        counts = np.bincount(part_labels, minlength=self.num_classes)
        starts = np.cumsum(counts) - counts
        return ordered[starts[labels] + rng.integers(0, counts[labels])]


def _class_ranks(rng: np.random.Generator, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A random rank of every row within its class (0..n_c-1) and the class sizes ``n_c``."""
    order = np.lexsort((rng.random(labels.size), labels))
    counts = np.bincount(labels, minlength=num_classes)
    starts = np.cumsum(counts) - counts
    ranks = np.empty(labels.size, np.int64)
    ranks[order] = np.arange(labels.size) - starts[labels[order]]
    return ranks, counts


def _stratified_heldout(rng: np.random.Generator, labels: np.ndarray, num_classes: int, fraction: float) -> np.ndarray:
    """Held-out mask over a pool: ``round(fraction * n_c)`` rows of each class, at least 1 and at most ``n_c - 1``
    (a class with a single row stays in the train part)."""
    ranks, counts = _class_ranks(rng, labels, num_classes)
    held = np.clip(np.round(fraction * counts), 1, np.maximum(counts - 1, 0)).astype(np.int64)
    held[counts < 2] = 0
    return ranks < held[labels]


def _split_pools(source: Source, fractions: list[float], seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """All rows (a predefined test split appended) and the disjoint pools' row indices, stratified by class."""
    rng = numpy_generator(seed, "pools")
    if len(fractions) != 3 or min(fractions) <= 0:
        raise ConfigError(f"data.pool_fractions={fractions} must be 3 positive numbers summing to 1")
    features, labels, n = source.features, source.labels, source.labels.size
    predefined = source.test_features is not None
    if predefined:  # meta-test pool = the predefined test split; train/val share the rest in proportion
        bounds = np.array([fractions[0] / (fractions[0] + fractions[1]), 1.0])
        features = np.concatenate([features, source.test_features])
        labels = np.concatenate([labels, source.test_labels])
    else:
        bounds = np.cumsum(fractions)[:2] / np.sum(fractions)
    ranks, counts = _class_ranks(rng, labels[:n], source.num_classes)
    cuts = np.round(np.outer(counts, bounds)).astype(np.int64)  # [C, 2] per-class pool boundaries
    which = (ranks >= cuts[labels[:n], 0]).astype(np.int64) + (ranks >= cuts[labels[:n], 1])
    pools = {split: np.flatnonzero(which == i) for i, split in enumerate(SPLITS)}
    if predefined:
        pools["test"] = np.arange(n, labels.size)
    return features, labels, pools
