"""GraphFilter (eq. 12) against dense matrix powers, as a PyG module on a sparse adj_t and on edge_index, and the
transmit hook for dropped agents."""

import torch

from surf.graphs.aggregate import aggregate
from surf.graphs.filter import GraphFilter
from surf.graphs.network import MessageBuffer

graph_filter = GraphFilter()


def _shift(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(n, n, generator=gen) * (torch.rand(n, n, generator=gen) < 0.5)
    dense = dense + torch.eye(n)
    dense = dense / dense.sum(1, keepdim=True)
    return dense, dense.to_sparse_csr()


def test_filter_equals_dense_powers():
    dense, sparse = _shift()
    w = torch.randn(6, 3, 2)
    taps = torch.tensor([0.3, -0.5, 1.2, 0.7])
    expected = sum(taps[k] * torch.einsum("ij,jab->iab", torch.matrix_power(dense, k), w) for k in range(4))
    assert torch.allclose(graph_filter(w, sparse, taps), expected, atol=1e-5)


def test_edge_index_input_equals_sparse_adjacency():
    """A PyG user passes edge_index (messages j -> i) with edge_weight S_ij and gets the same filter."""
    dense, sparse = _shift()
    coo = dense.to_sparse_coo().coalesce()
    receivers, senders = coo.indices()
    w = torch.randn(6, 3, 2)
    taps = torch.tensor([0.1, 0.8, -0.3])
    by_edges = graph_filter(w, torch.stack([senders, receivers]), taps, edge_weight=coo.values())
    assert torch.allclose(by_edges, graph_filter(w, sparse, taps), atol=1e-6)


def test_sparse_filter_is_the_sparse_matmul_bit_for_bit():
    _, sparse = _shift(40)
    z = torch.randn(40, 5, 3)
    assert torch.equal(graph_filter.hop(z, sparse), aggregate(sparse, z))


def test_per_agent_taps_broadcast():
    dense, sparse = _shift()
    w = torch.randn(6, 2, 2)
    taps = torch.randn(2, 6)
    expected = taps[0].view(-1, 1, 1) * w + taps[1].view(-1, 1, 1) * torch.einsum("ij,jab->iab", dense, w)
    assert torch.allclose(graph_filter(w, sparse, taps), expected, atol=1e-5)


def test_aggregate_is_one_round():
    dense, sparse = _shift()
    z = torch.randn(6, 4, 5)
    assert torch.allclose(aggregate(sparse, z), torch.einsum("ij,jab->iab", dense, z), atol=1e-6)


def test_zero_mode_removes_dropped_senders():
    dense, sparse = _shift()
    w = torch.randn(6, 2, 2)
    active = torch.tensor([True, False, True, True, False, True])
    out = graph_filter(w, sparse, torch.tensor([0.0, 1.0]), MessageBuffer("zero").transmitter(active))
    expected = torch.einsum("ij,jab->iab", dense, w * active.view(-1, 1, 1))
    assert torch.allclose(out, expected, atol=1e-6)


def test_stale_mode_uses_last_transmitted_value():
    dense, sparse = _shift()
    buffer = MessageBuffer("stale")
    old, new = torch.randn(6, 2, 2), torch.randn(6, 2, 2)
    taps = torch.tensor([0.0, 1.0])
    graph_filter(old, sparse, taps, buffer.transmitter(torch.ones(6, dtype=torch.bool)))
    active = torch.tensor([True, True, False, True, True, True])
    out = graph_filter(new, sparse, taps, buffer.transmitter(active))
    sent = torch.where(active.view(-1, 1, 1), new, old)
    assert torch.allclose(out, torch.einsum("ij,jab->iab", dense, sent), atol=1e-6)


def test_all_active_transmit_is_identity():
    _, sparse = _shift()
    w = torch.randn(6, 2, 2)
    taps = torch.tensor([0.2, 0.5, 0.3])
    for mode in ("stale", "zero"):
        hook = MessageBuffer(mode).transmitter(torch.ones(6, dtype=torch.bool))
        assert torch.equal(graph_filter(w, sparse, taps, hook), graph_filter(w, sparse, taps))
