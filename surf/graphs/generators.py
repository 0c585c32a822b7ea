"""Graph families: ``builder(num_agents, rng, **params) -> networkx.Graph`` on nodes 0..N-1, one function each.

``FAMILIES`` is the registry ``topology.name`` reads (a YAML spec in ``topologies/`` names one of them). Every
builder draws from the ``numpy`` generator it is given (keyed by the seed, and the task when graphs are resampled),
never from global state. Edge ``weight`` attributes (edge lists only) are the adjacency values of every GSO.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import numpy as np

from surf.utils.errors import ConfigError, TopologyError, ensure
from surf.utils.paths import REPO

TOPOLOGY_DIR = REPO / "topologies"


def _from_edges(num_agents: int, u: np.ndarray, v: np.ndarray) -> nx.Graph:
    """A graph on nodes 0..N-1 with edges u[i]-v[i] (duplicates merge)."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_agents))
    graph.add_edges_from(zip(u.tolist(), v.tolist(), strict=True))
    return graph


def _nx_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _check_probability(p: float, family: str) -> None:
    ensure(0.0 <= p <= 1.0, f"{family}: params.p={p} must be in [0, 1]")


def regular3_paper(num_agents: int, rng: np.random.Generator, degree: int = 3) -> nx.Graph:
    """The authors' "3-degree" graph: ring shifts +-1..+-degree//2, chords i-i+N//2+1 (no wrap), permuted."""
    n = num_agents
    ensure(degree >= 1, f"regular3_paper: params.degree={degree} must be >= 1")
    ensure(degree < n, f"regular3_paper: degree {degree} needs num_agents >= {degree + 1} (got {n}); raise num_agents "
                       "or lower topology.params.degree")
    nodes = np.arange(n)
    u = [nodes for _ in range(degree // 2)]
    v = [(nodes + k) % n for k in range(1, degree // 2 + 1)]
    if degree % 2:  # np.eye(N, k=N//2+1) + its transpose: i-(i+N//2+1) for i < N-N//2-1 only
        offset = n // 2 + 1
        u.append(np.arange(max(n - offset, 0)))
        v.append(u[-1] + offset)
    perm = rng.permutation(n)  # P A P^T
    return _from_edges(n, perm[np.concatenate(u)], perm[np.concatenate(v)])


def random_regular(num_agents: int, rng: np.random.Generator, degree: int = 3) -> nx.Graph:
    """Uniformly random degree-regular graph."""
    ensure(degree >= 0, f"random_regular: params.degree={degree} must be >= 0")
    ensure(degree < num_agents, f"random_regular: degree {degree} needs num_agents >= {degree + 1} (got {num_agents}); "
                                "raise num_agents or lower topology.params.degree")
    ensure(num_agents * degree % 2 == 0,
             f"random_regular: num_agents*degree must be even (N={num_agents}, degree={degree})")
    return nx.random_regular_graph(degree, num_agents, seed=_nx_seed(rng))


def erdos_renyi(num_agents: int, rng: np.random.Generator, p: float = 0.1, connected: bool = False) -> nx.Graph:
    """Erdos-Renyi G(N, p); connected=true redraws until connected (at most 100 draws)."""
    _check_probability(p, "erdos_renyi")
    for _ in range(100 if connected else 1):
        graph = nx.fast_gnp_random_graph(num_agents, p, seed=_nx_seed(rng))
        if not connected or nx.is_connected(graph):
            return graph
    raise TopologyError(f"erdos_renyi (N={num_agents}, p={p}): all 100 draws were disconnected; raise params.p")


def erdos_renyi_paper(num_agents: int, rng: np.random.Generator, p: float = 0.1) -> nx.Graph:
    """The authors' ER: A = (U < p) symmetrized as (A + A^T) > 0, so each pair is linked w.p. 2p - p^2."""
    _check_probability(p, "erdos_renyi_paper")
    return nx.fast_gnp_random_graph(num_agents, 1.0 - (1.0 - p) ** 2, seed=_nx_seed(rng))


def star(num_agents: int, rng: np.random.Generator) -> nx.Graph:
    """Star: node 0 is the hub (the server in FL mode)."""
    return nx.star_graph(num_agents - 1)


def ring(num_agents: int, rng: np.random.Generator) -> nx.Graph:
    """Cycle i - i+1 (mod N)."""
    return nx.cycle_graph(num_agents)


def line(num_agents: int, rng: np.random.Generator) -> nx.Graph:
    """Path 0 - 1 - ... - N-1."""
    return nx.path_graph(num_agents)


def complete(num_agents: int, rng: np.random.Generator) -> nx.Graph:
    """Every pair of agents linked."""
    return nx.complete_graph(num_agents)


def _grid_shape(n: int, rows: int | None, cols: int | None, family: str) -> tuple[int, int]:
    """rows x cols == n; missing sides follow from the other, or the most square factorization of n."""
    if rows is None and cols is None:
        rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    if rows is None or cols is None:
        given = rows if rows is not None else cols
        other = n // given if given > 0 and n % given == 0 else 0
        rows, cols = (given, other) if cols is None else (other, given)
    ensure(rows >= 1 and cols >= 1 and rows * cols == n,
             f"{family}: params.rows*params.cols must equal num_agents={n} (got rows={rows}, cols={cols})")
    return rows, cols


def _lattice(n: int, rows: int | None, cols: int | None, periodic: bool, family: str) -> nx.Graph:
    """Row-major 2-D lattice (node r*cols + c), optionally with periodic boundary."""
    rows, cols = _grid_shape(n, rows, cols, family)
    idx = np.arange(n).reshape(rows, cols)
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])]
    if periodic:
        pairs += [(idx[:, -1], idx[:, 0]), (idx[-1, :], idx[0, :])]
    u = np.concatenate([a.ravel() for a, _ in pairs])
    v = np.concatenate([b.ravel() for _, b in pairs])
    return _from_edges(n, u, v)


def grid(num_agents: int, rng: np.random.Generator, rows: int | None = None, cols: int | None = None) -> nx.Graph:
    """2-D grid, rows x cols == N (default: the most square factorization)."""
    return _lattice(num_agents, rows, cols, periodic=False, family="grid")


def torus(num_agents: int, rng: np.random.Generator, rows: int | None = None, cols: int | None = None) -> nx.Graph:
    """2-D grid with periodic boundary, rows x cols == N (default: the most square factorization)."""
    return _lattice(num_agents, rows, cols, periodic=True, family="torus")


def small_world(num_agents: int, rng: np.random.Generator, k: int = 4, p: float = 0.1) -> nx.Graph:
    """Connected Watts-Strogatz: ring of k nearest neighbours, each edge rewired w.p. p."""
    ensure(2 <= k < num_agents, f"small_world: params.k={k} must be in [2, {num_agents - 1}]")
    _check_probability(p, "small_world")
    try:
        return nx.connected_watts_strogatz_graph(num_agents, k, p, tries=100, seed=_nx_seed(rng))
    except nx.NetworkXError:
        raise TopologyError(f"small_world: no connected graph in 100 draws (N={num_agents}, k={k}, p={p}); "
                            "raise params.k or lower params.p") from None


def exponential(num_agents: int, rng: np.random.Generator) -> nx.Graph:
    """Static exponential graph: i - (i + 2^j) mod N for j = 0..floor(log2(N-1))."""
    n = num_agents
    hops = 2 ** np.arange((n - 1).bit_length()) if n > 1 else np.zeros(0, dtype=np.int64)
    u = np.repeat(np.arange(n), len(hops))
    return _from_edges(n, u, (u + np.tile(hops, n)) % n)


def _resolve_file(path: str) -> Path:
    """An absolute path, or a relative one found from the working directory, the repo root or topologies/."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, REPO / given, TOPOLOGY_DIR / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"edge list '{path}' not found (looked in: {', '.join(str(c.parent) for c in candidates)})")


def _parse_edge(fields: list[str]) -> tuple[int, int, float] | None:
    """``u v [weight]`` -> (u, v, weight); None if malformed, negative ids or a non-positive weight."""
    if len(fields) not in (2, 3):
        return None
    try:
        u, v = int(fields[0]), int(fields[1])
        weight = float(fields[2]) if len(fields) == 3 else 1.0
    except ValueError:
        return None
    return (u, v, weight) if min(u, v) >= 0 and math.isfinite(weight) and weight > 0 else None


def edge_list(num_agents: int, rng: np.random.Generator, path: str) -> nx.Graph:
    """Edges read from a text file: lines 'u v [weight]', '#' comments, node ids 0..N-1."""
    file = _resolve_file(path)
    graph = nx.Graph()
    graph.add_nodes_from(range(num_agents))
    top = -1
    for number, text in enumerate(file.read_text().splitlines(), start=1):
        fields = text.split("#", 1)[0].split()
        if not fields:
            continue
        edge = _parse_edge(fields)
        if edge is None:
            raise ConfigError(f"{file}:{number}: expected 'u v [weight]' with integer node ids >= 0 and a "
                              f"positive weight, got {text.strip()!r}")
        u, v, weight = edge
        if max(u, v) >= num_agents:
            raise ConfigError(f"{file}:{number}: node id {max(u, v)} >= num_agents={num_agents}")
        graph.add_edge(u, v, weight=weight)
        top = max(top, u, v)
    if top < 0:
        raise ConfigError(f"{file}: the edge list has no edges; write one 'u v [weight]' line per edge")
    if top + 1 != num_agents:
        raise ConfigError(f"{file}: the edge list has {top + 1} nodes (ids 0..{top}) but num_agents={num_agents}")
    return graph


FAMILIES: dict[str, Callable[..., nx.Graph]] = {
    f.__name__: f
    for f in (regular3_paper, random_regular, erdos_renyi, erdos_renyi_paper, star, ring, line, complete, grid,
              torus, small_world, exponential, edge_list)
}
