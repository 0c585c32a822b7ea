"""Communication graphs and their graph shift operators (GSOs).

A topology is a graph family from ``FAMILIES`` (or a YAML spec in ``topologies/`` naming one) plus a GSO ``S``:
one communication round of all agents is ``S @ W``, agent i aggregating row i. Graph randomness is keyed by the
seed (and the task when ``topology.resample_per_task``), never by draw order. Edge ``weight`` attributes are the
adjacency values of every GSO, and "degree" in a GSO means weighted degree (the row sum of A).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import yaml

from surf.config import TopologyConfig, coerce_value
from surf.errors import ConfigError, TopologyError
from surf.seeding import numpy_generator

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY_DIR = REPO / "topologies"
GSOS: tuple[str, ...] = ("row_normalized", "lambda_max", "metropolis", "max_degree", "laplacian")
DENSE_EIG_LIMIT = 2000  # spectral(): dense eigenvalues up to this many agents, ARPACK above
DENSE_LAMBDA_LIMIT = 500  # GSO normalization: dense lambda_max up to this many agents, ARPACK above
# ARPACK residual tolerance: eigenvalues within ~1e-6 (relative) in < 1 s even for 10,000-node rings and paths,
# whose clustered top eigenvalues make tighter tolerances take tens of seconds.
ARPACK_TOL = 1e-5
_SPEC_KEYS = ("description", "family", "params", "gso")


@dataclass
class Topology:
    """A graph on nodes 0..N-1 and its GSO, a sparse CSR float32 (N, N) tensor."""

    graph: nx.Graph
    shift: torch.Tensor
    name: str
    gso: str

    def dense(self) -> torch.Tensor:
        """The GSO as a dense float32 tensor."""
        return self.shift.to_dense()

    def spectral(self) -> dict[str, float]:
        """Eigenvalue moduli of S (lambda_2: second largest) and degree statistics of the graph."""
        moduli = _top_moduli(self.shift)
        lambda_2 = float(moduli[1]) if len(moduli) > 1 else 0.0
        degrees = [d for _, d in self.graph.degree()]
        return {
            "lambda_2": lambda_2,
            "spectral_gap": 1.0 - lambda_2,
            "lambda_max": float(moduli[0]),
            "mean_degree": float(np.mean(degrees)),
            "max_degree": float(max(degrees)),
            "num_edges": float(self.graph.number_of_edges()),
        }

    def to(self, device: torch.device | str) -> Topology:
        """The same topology with the GSO on ``device``."""
        return dataclasses.replace(self, shift=self.shift.to(device))


# ---------------------------------------------------------------- families: builder(num_agents, rng, **params)


def _from_edges(num_agents: int, u: np.ndarray, v: np.ndarray) -> nx.Graph:
    """A graph on nodes 0..N-1 with edges u[i]-v[i] (duplicates merge)."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_agents))
    graph.add_edges_from(zip(u.tolist(), v.tolist(), strict=True))
    return graph


def _nx_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_probability(p: float, family: str) -> None:
    _require(0.0 <= p <= 1.0, f"{family}: params.p={p} must be in [0, 1]")


def regular3_paper(num_agents: int, rng: np.random.Generator, degree: int = 3) -> nx.Graph:
    """The authors' "3-degree" graph: ring shifts +-1..+-degree//2, chords i-i+N//2+1 (no wrap), permuted."""
    n = num_agents
    _require(1 <= degree < n, f"regular3_paper: params.degree={degree} must be in [1, {n - 1}]")
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
    _require(0 <= degree < num_agents, f"random_regular: params.degree={degree} must be in [0, {num_agents - 1}]")
    _require(num_agents * degree % 2 == 0,
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
    _require(rows >= 1 and cols >= 1 and rows * cols == n,
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
    _require(2 <= k < num_agents, f"small_world: params.k={k} must be in [2, {num_agents - 1}]")
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
    if top + 1 != num_agents:
        raise ConfigError(f"{file}: the edge list has {top + 1} nodes (ids 0..{top}) but num_agents={num_agents}")
    return graph


FAMILIES: dict[str, Callable[..., nx.Graph]] = {
    f.__name__: f
    for f in (regular3_paper, random_regular, erdos_renyi, erdos_renyi_paper, star, ring, line, complete, grid,
              torus, small_world, exponential, edge_list)
}
_DISCONNECTED_HINTS = {
    "erdos_renyi": "raise params.p, set params.connected=true or topology.allow_disconnected=true",
    "erdos_renyi_paper": "raise params.p or set topology.allow_disconnected=true",
}


# ---------------------------------------------------------------- graphs by name, specs


def _spec_paths() -> dict[str, Path]:
    return {path.stem: path for path in sorted(TOPOLOGY_DIR.glob("*.yaml"))}


def _unknown(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, sorted(set(FAMILIES) | set(_spec_paths())), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown topology '{name}' (see `surf list`{hint})")


def _load_spec(path: Path) -> dict[str, Any]:
    """A spec file's mapping, checked: known keys, a family from FAMILIES, params a mapping."""
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    _require(isinstance(spec, dict), f"{path}: expected a mapping with keys {', '.join(_SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    _require(not unknown, f"{path}: unknown keys {unknown} (valid: {', '.join(_SPEC_KEYS)})")
    _require(spec.get("family") in FAMILIES, f"{path}: family {spec.get('family')!r} is not one of {sorted(FAMILIES)}")
    _require(isinstance(spec.get("params") or {}, dict), f"{path}: params must be a mapping")
    return spec


def build_graph(name: str, num_agents: int, params: dict, rng: np.random.Generator) -> nx.Graph:
    """The graph of family ``name`` on nodes 0..N-1 (no self-loops); params are checked against the builder."""
    builder = FAMILIES.get(name)
    if builder is None:
        raise _unknown(name)
    hints = typing.get_type_hints(builder)
    signature = inspect.signature(builder).parameters
    accepted = list(signature)[2:]
    kwargs = {}
    for key, value in params.items():
        if key not in accepted:
            raise ConfigError(f"topology '{name}' has no parameter '{key}' (valid: {', '.join(accepted) or 'none'})")
        kwargs[key] = coerce_value(value, hints[key], f"topology.params.{key}")
    missing = [k for k in accepted if k not in kwargs and signature[k].default is inspect.Parameter.empty]
    _require(not missing, f"topology '{name}' needs {', '.join(f'params.{k}' for k in missing)}")
    graph = builder(num_agents, rng, **kwargs)
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))
    graph.graph["family"] = name
    return graph


def build_topology(cfg: TopologyConfig, num_agents: int, seed: int, task_key: tuple = ()) -> Topology:
    """Resolve ``cfg.name`` (spec or family), draw the graph, check connectivity and build the GSO.

    A spec's gso is used unless ``topology.gso`` was changed from its default; cfg.params override spec params.
    """
    family, params, gso = cfg.name, dict(cfg.params), cfg.gso
    spec_path = _spec_paths().get(cfg.name)
    if spec_path is not None:
        spec = _load_spec(spec_path)
        family, params = spec["family"], {**(spec.get("params") or {}), **cfg.params}
        if spec.get("gso") and cfg.gso == TopologyConfig.gso:
            gso = spec["gso"]
    elif cfg.name not in FAMILIES:
        raise _unknown(cfg.name)
    keys = ("graph", *task_key) if cfg.resample_per_task else ("graph",)
    graph = build_graph(family, num_agents, params, numpy_generator(seed, *keys))
    if not cfg.allow_disconnected and not nx.is_connected(graph):
        hint = _DISCONNECTED_HINTS.get(family, "use a connected graph or set topology.allow_disconnected=true")
        raise TopologyError(f"graph '{cfg.name}' (N={num_agents}) is disconnected "
                            f"({nx.number_connected_components(graph)} components); {hint}")
    return Topology(graph=graph, shift=shift_operator(graph, gso, cfg.laplacian_alpha), name=cfg.name, gso=gso)


def list_topologies() -> dict[str, str]:
    """Family and spec names -> one-line description (a spec shadows a family of the same name)."""
    listing = {name: (inspect.getdoc(builder) or "").splitlines()[0] for name, builder in FAMILIES.items()}
    for name, path in _spec_paths().items():
        spec = _load_spec(path)
        listing[name] = str(spec.get("description") or f"spec of family '{spec['family']}'")
    return listing


# ---------------------------------------------------------------- graph shift operators


def _largest_eigenvalue(matrix: sp.csr_array) -> float:
    """Largest (algebraic) eigenvalue of a symmetric sparse matrix."""
    n = matrix.shape[0]
    if n <= DENSE_LAMBDA_LIMIT:
        return float(np.linalg.eigvalsh(matrix.toarray())[-1])
    v0 = np.random.default_rng(0).standard_normal(n)  # fixed start vector: deterministic ARPACK
    return float(spla.eigsh(matrix, k=1, which="LA", v0=v0, tol=ARPACK_TOL, return_eigenvectors=False)[0])


def _to_torch_csr(matrix: sp.sparray) -> torch.Tensor:
    matrix = sp.csr_array(matrix)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    with warnings.catch_warnings():  # torch flags sparse CSR as "beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            check_invariants=False,
        )


def shift_operator(graph: nx.Graph, gso: str, laplacian_alpha: float | None = None) -> torch.Tensor:
    """The GSO of ``graph`` (nodes 0..N-1, edge ``weight`` default 1) as a sparse CSR float32 tensor.

    row_normalized: D~^-1 (A + I); lambda_max: (A + I) / lambda_max(A + I), for a star A / lambda_max(A);
    metropolis: S_ij = A_ij / (1 + max(d_i, d_j)); max_degree: S_ij = A_ij / (1 + d_max); laplacian: I - alpha L
    with alpha = 1 / lambda_max(L) by default. The last three put the remaining row mass on the diagonal.
    """
    if gso not in GSOS:
        raise ConfigError(f"unknown gso '{gso}' (valid: {', '.join(GSOS)})")
    n = graph.number_of_nodes()
    adj = sp.csr_array(nx.to_scipy_sparse_array(graph, nodelist=range(n), weight="weight", dtype=np.float64))
    degree = adj.sum(axis=1)
    eye = sp.eye_array(n, format="csr")
    if gso == "row_normalized":
        shift = sp.diags_array(1.0 / (degree + 1.0)) @ (adj + eye)
    elif gso == "lambda_max":
        hop = adj if graph.graph.get("family") == "star" else adj + eye
        rows = hop.sum(axis=1)  # nonnegative with constant row sums (regular graph): that sum is lambda_max
        scale = rows.max() if np.ptp(rows) <= 1e-12 * rows.max() else _largest_eigenvalue(hop)
        shift = hop / scale
    elif gso == "metropolis":
        coo = adj.tocoo()
        weights = coo.data / (1.0 + np.maximum(degree[coo.row], degree[coo.col]))
        off = sp.csr_array((weights, (coo.row, coo.col)), shape=(n, n))
        shift = off + sp.diags_array(1.0 - off.sum(axis=1))
    elif gso == "max_degree":
        bound = 1.0 + degree.max()
        shift = adj / bound + sp.diags_array(1.0 - degree / bound)
    else:
        laplacian = sp.diags_array(degree) - adj
        if laplacian_alpha is None:
            top = _largest_eigenvalue(laplacian)
            laplacian_alpha = 1.0 / top if top > 0 else 0.0
        shift = eye - laplacian_alpha * laplacian
    return _to_torch_csr(shift)


def _top_moduli(shift: torch.Tensor) -> np.ndarray:
    """The largest eigenvalue moduli of S, descending: all of them up to DENSE_EIG_LIMIT agents, else the top 2."""
    n = shift.shape[0]
    if n <= DENSE_EIG_LIMIT:
        return np.sort(np.abs(np.linalg.eigvals(shift.to_dense().double().cpu().numpy())))[::-1]
    shift = shift.cpu()
    matrix = sp.csr_array((shift.values().double().numpy(), shift.col_indices().numpy(),
                           shift.crow_indices().numpy()), shape=(n, n))
    v0 = np.random.default_rng(0).standard_normal(n)
    symmetric = abs(matrix - matrix.T).max() < 1e-6
    solver = spla.eigsh if symmetric else spla.eigs
    return np.sort(np.abs(solver(matrix, k=2, which="LM", v0=v0, tol=ARPACK_TOL, return_eigenvectors=False)))[::-1]
