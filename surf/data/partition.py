"""Label assignment: how a task spreads its classes over agents.

A partition draws per-agent class probabilities ``[N, C]`` (rows sum to 1, zero on unavailable classes); then
:func:`draw_labels` turns them into labels ``[N, m]``, separately for the training (``m_train``) and the held-out
(``m_test``) samples, so one distribution governs both sides of every agent.

Counts are allocated by stratified rounding rather than i.i.d. draws: ``floor(m * q_c)`` samples of class ``c`` plus
the remainder given to distinct random classes (chosen with weights favouring the larger fractional parts). For
*shared* partitions (``imbalanced``, ``iid``: one distribution for all agents) the counts are allocated over the
whole task, ``N * m`` labels, then shuffled and dealt out to agents, as in the paper's code.
"""

from __future__ import annotations

import numpy as np

from surf.utils.errors import ConfigError

PARTITIONS: dict[str, str] = {
    "imbalanced": "paper: per-task class proportions p_c ~ randint(1, 100), the same for every agent",
    "dirichlet": "label skew: agent i's class proportions q_i ~ Dir(data.dirichlet_alpha)",
    "iid": "uniform classes, the same for every agent",
    "pathological": "each agent sees data.classes_per_agent random classes, evenly",
}
SHARED: frozenset[str] = frozenset({"imbalanced", "iid"})  # partitions with one distribution for all agents


def imbalanced(rng: np.random.Generator, num_agents: int, available: np.ndarray) -> np.ndarray:
    """Paper: task proportions ``p_c ∝ U{1..100}`` over the available classes, identical rows."""
    weights = rng.integers(1, 101, available.size) * available
    return np.broadcast_to(weights / weights.sum(), (num_agents, available.size)).copy()


def iid(num_agents: int, available: np.ndarray) -> np.ndarray:
    """Uniform over the available classes, identical rows."""
    row = available / available.sum()
    return np.broadcast_to(row, (num_agents, available.size)).astype(np.float64)


def dirichlet(rng: np.random.Generator, num_agents: int, available: np.ndarray, alpha: float) -> np.ndarray:
    """Agent ``i``: ``q_i ~ Dir(alpha * 1)`` over the available classes (the renormalized restriction of a
    ``Dir(alpha * 1_C)`` draw has exactly this law). A row that underflows to zero for tiny ``alpha`` becomes
    one-hot on a random available class, the ``alpha -> 0`` limit."""
    classes = np.flatnonzero(available)
    probs = np.zeros((num_agents, available.size))
    draw = rng.dirichlet(np.full(classes.size, alpha), num_agents)
    bad = ~np.isfinite(draw).all(1) | (draw.sum(1) <= 0)
    draw[bad] = 0.0
    draw[bad, rng.integers(0, classes.size, int(bad.sum()))] = 1.0
    probs[:, classes] = draw / draw.sum(1, keepdims=True)
    return probs


def pathological(rng: np.random.Generator, num_agents: int, available: np.ndarray, classes: int) -> np.ndarray:
    """Each agent: ``classes`` distinct random available classes (fewer if fewer exist), uniform among them."""
    pool = np.flatnonzero(available)
    take = min(classes, pool.size)
    chosen = np.argsort(rng.random((num_agents, pool.size)), axis=1)[:, :take]  # a random subset per agent
    probs = np.zeros((num_agents, available.size))
    np.put_along_axis(probs, pool[chosen], 1.0 / take, axis=1)
    return probs


def class_probabilities(
    name: str,
    rng: np.random.Generator,
    num_agents: int,
    available: np.ndarray,
    *,
    alpha: float,
    classes_per_agent: int,
) -> np.ndarray:
    """Per-agent class probabilities ``[N, C]`` of partition ``name``; ``available`` (bool ``[C]``) marks the
    classes the task can supply, the others get probability 0."""
    available = np.asarray(available, dtype=bool)
    if not available.any():
        raise ValueError("no class is available to the task")
    if name == "imbalanced":
        return imbalanced(rng, num_agents, available)
    if name == "iid":
        return iid(num_agents, available)
    if name == "dirichlet":
        return dirichlet(rng, num_agents, available, alpha)
    if name == "pathological":
        return pathological(rng, num_agents, available, classes_per_agent)
    raise ConfigError(f"data.partition={name!r} is not one of {', '.join(PARTITIONS)}")


def allocate_counts(rng: np.random.Generator, probs: np.ndarray, total: int) -> np.ndarray:
    """Integer counts ``[R, C]`` with rows summing to ``total`` and ``E ~= total * probs`` (stratified rounding).

    Each row gets ``floor(total * q_c)`` per class; the remainder ``r`` goes to ``r`` distinct classes with
    ``q_c > 0``, drawn by Gumbel-top-r on the fractional parts (there are always enough such classes).
    """
    probs = probs / probs.sum(1, keepdims=True)
    exact = total * probs
    counts = np.floor(exact).astype(np.int64)
    remainder = total - counts.sum(1)
    with np.errstate(divide="ignore"):
        keys = np.where(probs > 0, np.log(exact - counts + 1e-12), -np.inf) + rng.gumbel(size=probs.shape)
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    counts += rank < remainder[:, None]
    return counts


def draw_labels(rng: np.random.Generator, probs: np.ndarray, count: int, shared: bool) -> np.ndarray:
    """Labels ``[N, count]`` with per-agent class distribution ``probs`` ``[N, C]``.

    ``shared``: all rows are equal; counts are allocated over all ``N * count`` labels, shuffled and dealt out, so
    agents are i.i.d. within the task. Otherwise each agent's counts are allocated from its own row.
    """
    num_agents, num_classes = probs.shape
    if shared:
        counts = allocate_counts(rng, probs[:1], num_agents * count)[0]
        labels = rng.permutation(np.repeat(np.arange(num_classes), counts))
        return labels.reshape(num_agents, count)
    counts = allocate_counts(rng, probs, count)
    labels = np.repeat(np.tile(np.arange(num_classes), num_agents), counts.ravel()).reshape(num_agents, count)
    return rng.permuted(labels, axis=1)
