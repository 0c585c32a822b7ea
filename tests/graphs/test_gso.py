"""GSOs built with PyG's utilities equal their textbook dense formulas, and the PyG view of a topology."""

import numpy as np
import pytest
import torch

from surf.config import TopologyConfig
from surf.graphs.generators import erdos_renyi, regular3_paper
from surf.graphs.gso import GSOS, shift_operator
from surf.graphs.topology import build_topology


def dense_reference(adjacency: np.ndarray, gso: str, star: bool = False) -> np.ndarray:
    """The GSO from its definition, in float64 numpy."""
    n = len(adjacency)
    degree = adjacency.sum(1)
    eye = np.eye(n)
    if gso == "row_normalized":
        return (adjacency + eye) / (degree + 1.0)[:, None]
    if gso == "lambda_max":
        hop = adjacency if star else adjacency + eye
        return hop / np.linalg.eigvalsh(hop)[-1]
    if gso == "metropolis":
        off = adjacency / (1.0 + np.maximum(degree[:, None], degree[None, :]))
        return off + np.diag(1.0 - off.sum(1))
    if gso == "max_degree":
        bound = 1.0 + degree.max()
        return adjacency / bound + np.diag(1.0 - degree / bound)
    laplacian = np.diag(degree) - adjacency
    return eye - laplacian / np.linalg.eigvalsh(laplacian)[-1]


@pytest.mark.parametrize("gso", GSOS)
@pytest.mark.parametrize("builder", [regular3_paper, erdos_renyi])
def test_gso_equals_its_dense_formula(gso, builder):
    graph = builder(30, np.random.default_rng(3))
    for i, (u, v) in enumerate(graph.edges()):  # weighted edges, as from an edge list
        graph[u][v]["weight"] = 1.0 + (i % 3) * 0.5
    adjacency = np.zeros((30, 30))
    for u, v, w in graph.edges(data="weight"):
        adjacency[u, v] = adjacency[v, u] = w
    shift = shift_operator(graph, gso)
    assert shift.layout == torch.sparse_csr and shift.dtype == torch.float32
    assert np.allclose(shift.to_dense().double().numpy(), dense_reference(adjacency, gso), atol=1e-6)


def test_row_normalized_is_exact_in_float32():
    graph = regular3_paper(100, np.random.default_rng(0))
    adjacency = np.zeros((100, 100))
    for u, v in graph.edges():
        adjacency[u, v] = adjacency[v, u] = 1.0
    expected = torch.from_numpy(dense_reference(adjacency, "row_normalized")).float()
    assert torch.equal(shift_operator(graph, "row_normalized").to_dense(), expected)


def test_topology_exposes_pyg_edge_index_and_weights():
    topology = build_topology(TopologyConfig(name="ring"), 6, seed=0)
    index, weight = topology.edge_index, topology.edge_weight
    assert index.shape == (2, 12) and torch.equal(weight, torch.ones(12, dtype=torch.float64))
    pairs = {(int(a), int(b)) for a, b in index.t()}
    assert (0, 1) in pairs and (1, 0) in pairs and all(a != b for a, b in pairs)


@pytest.mark.parametrize("name", ["star", "line", "erdos_renyi_paper"])  # lambda_max by eigenvalue: irregular
def test_building_a_topology_warns_nothing(name):
    """torch's sparse "beta" and invariant-check notices must not reach a user's terminal."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # what a run prints (DeprecationWarnings stay hidden)
        build_topology(TopologyConfig(name=name, gso="lambda_max"), 12, seed=0)
