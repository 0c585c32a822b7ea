"""Graph shift operators (GSOs) in PyG's conventions: a graph is ``edge_index`` (2, E) with ``edge_weight`` (E,),
both directions listed, no self-loops; a GSO ``S`` is a sparse CSR float32 (N, N) tensor whose row i holds what
agent i aggregates (``S`` is PyG's ``adj_t``: rows are targets). One communication round of all agents is ``S @ W``.

Degree-based normalizations, self-loops and Laplacians come from ``torch_geometric.utils`` (imported on first use:
PyG takes seconds to import and ``surf list`` / ``surf --help`` need none of it). "Degree" means weighted degree.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import torch

from surf.graphs.spectra import largest_eigenvalue
from surf.utils.errors import ConfigError

EdgeSet = tuple[torch.Tensor, torch.Tensor]  # (edge_index (2, E) int64, edge_weight (E,) float64)


def graph_edges(graph: nx.Graph) -> EdgeSet:
    """The undirected graph as PyG ``(edge_index, edge_weight)``: both directions, sorted, weight default 1."""
    from torch_geometric.utils import to_undirected

    n = graph.number_of_nodes()
    triples = [(u, v, float(w)) for u, v, w in graph.edges(data="weight", default=1.0) if u != v]
    if not triples:
        return torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
    index = torch.tensor([[u for u, _, _ in triples], [v for _, v, _ in triples]], dtype=torch.int64)
    weight = torch.tensor([w for _, _, w in triples], dtype=torch.float64)
    return to_undirected(index, weight, num_nodes=n)


def weighted_degree(edges: EdgeSet, n: int) -> torch.Tensor:
    """Row sums of the adjacency (weighted degree of every node), float64."""
    from torch_geometric.utils import scatter

    index, weight = edges
    return scatter(weight, index[0], dim=0, dim_size=n, reduce="sum")


def to_csr(index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """A (N, N) float32 CSR tensor from COO entries (duplicates summed, explicit zeros dropped)."""
    keep = values != 0
    coo = torch.sparse_coo_tensor(index[:, keep], values[keep], (n, n), check_invariants=False).coalesce()
    return coo.to(torch.float32).to_sparse_csr()  # its "beta" notice is silenced in surf/__init__.py


def row_normalized(edges: EdgeSet, n: int, laplacian_alpha: float | None, star: bool) -> torch.Tensor:
    """``D~^-1 (A + I)``: every agent averages itself and its neighbours (the paper's code)."""
    from torch_geometric.utils import add_self_loops

    inverse = 1.0 / (weighted_degree(edges, n) + 1.0)
    index, weight = add_self_loops(*edges, fill_value=1.0, num_nodes=n)
    return to_csr(index, inverse[index[0]] * weight, n)


def lambda_max(edges: EdgeSet, n: int, laplacian_alpha: float | None, star: bool) -> torch.Tensor:
    """``(A + I) / lambda_max(A + I)``; for a star ``A / lambda_max(A)`` (the server keeps no self term)."""
    from torch_geometric.utils import add_self_loops

    index, weight = edges if star else add_self_loops(*edges, fill_value=1.0, num_nodes=n)
    rows = weighted_degree((index, weight), n)  # constant row sums (a regular graph): that sum is lambda_max
    if float(rows.max() - rows.min()) <= 1e-12 * float(rows.max()):
        scale = float(rows.max())
    else:
        scale = largest_eigenvalue(torch.sparse_coo_tensor(index, weight, (n, n), check_invariants=False).coalesce())
    return to_csr(index, weight / scale, n)


def _with_diagonal(index: torch.Tensor, off: torch.Tensor, n: int) -> torch.Tensor:
    """Off-diagonal weights plus the remaining row mass ``1 - sum_j S_ij`` on the diagonal."""
    loops = torch.arange(n).repeat(2, 1)
    diagonal = 1.0 - weighted_degree((index, off), n)
    return to_csr(torch.cat([index, loops], dim=1), torch.cat([off, diagonal]), n)


def metropolis(edges: EdgeSet, n: int, laplacian_alpha: float | None, star: bool) -> torch.Tensor:
    """Metropolis-Hastings: ``S_ij = A_ij / (1 + max(d_i, d_j))`` (symmetric, doubly stochastic)."""
    index, weight = edges
    degree = weighted_degree(edges, n)
    return _with_diagonal(index, weight / (1.0 + torch.maximum(degree[index[0]], degree[index[1]])), n)


def max_degree(edges: EdgeSet, n: int, laplacian_alpha: float | None, star: bool) -> torch.Tensor:
    """``S_ij = A_ij / (1 + d_max)``, the remaining mass on the diagonal."""
    index, weight = edges
    degree = weighted_degree(edges, n)
    bound = 1.0 + float(degree.max())
    loops = torch.arange(n).repeat(2, 1)
    return to_csr(torch.cat([index, loops], dim=1), torch.cat([weight / bound, 1.0 - degree / bound]), n)


def laplacian(edges: EdgeSet, n: int, laplacian_alpha: float | None, star: bool) -> torch.Tensor:
    """``I - alpha L`` with the combinatorial Laplacian L; alpha = 1 / lambda_max(L) by default."""
    from torch_geometric.utils import get_laplacian

    index, weight = get_laplacian(*edges, normalization=None, num_nodes=n)
    if laplacian_alpha is None:
        top = largest_eigenvalue(torch.sparse_coo_tensor(index, weight, (n, n), check_invariants=False).coalesce())
        laplacian_alpha = 1.0 / top if top > 0 else 0.0
    loops = torch.arange(n).repeat(2, 1)
    return to_csr(torch.cat([loops, index], dim=1),
                  torch.cat([torch.ones(n, dtype=torch.float64), -laplacian_alpha * weight]), n)


GSOS: dict[str, Callable[[EdgeSet, int, float | None, bool], torch.Tensor]] = {
    f.__name__: f for f in (row_normalized, lambda_max, metropolis, max_degree, laplacian)
}


def shift_operator(graph: nx.Graph, gso: str, laplacian_alpha: float | None = None) -> torch.Tensor:
    """The GSO ``gso`` (a name in ``GSOS``) of ``graph`` (nodes 0..N-1) as a sparse CSR float32 tensor."""
    if gso not in GSOS:
        raise ConfigError(f"unknown gso '{gso}' (valid: {', '.join(GSOS)})")
    n = graph.number_of_nodes()
    return GSOS[gso](graph_edges(graph), n, laplacian_alpha, graph.graph.get("family") == "star")


def shift_power(shift: torch.Tensor, hops: int) -> torch.Tensor:
    """``S^K`` for K >= 1 in the layout of S: K rounds of plain S mixing as one operator (what a multi-consensus
    method applies per gradient step); ``S`` itself, the same tensor, for K = 1."""
    if hops < 1:
        raise ValueError(f"shift_power needs hops >= 1, got {hops}")
    power = shift
    for _ in range(hops - 1):
        power = power @ shift
    return power
