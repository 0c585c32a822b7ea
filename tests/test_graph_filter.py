"""Graph filter against dense matrix powers, and the transmit hook for dropped agents."""

import torch

from surf.asynchrony import MessageBuffer, draw_active
from surf.graph_filter import aggregate, graph_filter


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
    assert torch.allclose(graph_filter(sparse, w, taps), expected, atol=1e-5)


def test_per_agent_taps_broadcast():
    dense, sparse = _shift()
    w = torch.randn(6, 2, 2)
    taps = torch.randn(2, 6)
    expected = taps[0].view(-1, 1, 1) * w + taps[1].view(-1, 1, 1) * torch.einsum("ij,jab->iab", dense, w)
    assert torch.allclose(graph_filter(sparse, w, taps), expected, atol=1e-5)


def test_aggregate_is_one_round():
    dense, sparse = _shift()
    z = torch.randn(6, 4, 5)
    assert torch.allclose(aggregate(sparse, z), torch.einsum("ij,jab->iab", dense, z), atol=1e-6)


def test_zero_mode_removes_dropped_senders():
    dense, sparse = _shift()
    w = torch.randn(6, 2, 2)
    active = torch.tensor([True, False, True, True, False, True])
    out = graph_filter(sparse, w, torch.tensor([0.0, 1.0]), MessageBuffer("zero").transmitter(active))
    expected = torch.einsum("ij,jab->iab", dense, w * active.view(-1, 1, 1))
    assert torch.allclose(out, expected, atol=1e-6)


def test_stale_mode_uses_last_transmitted_value():
    dense, sparse = _shift()
    buffer = MessageBuffer("stale")
    old, new = torch.randn(6, 2, 2), torch.randn(6, 2, 2)
    taps = torch.tensor([0.0, 1.0])
    graph_filter(sparse, old, taps, buffer.transmitter(torch.ones(6, dtype=torch.bool)))
    active = torch.tensor([True, True, False, True, True, True])
    out = graph_filter(sparse, new, taps, buffer.transmitter(active))
    sent = torch.where(active.view(-1, 1, 1), new, old)
    assert torch.allclose(out, torch.einsum("ij,jab->iab", dense, sent), atol=1e-6)


def test_all_active_transmit_is_identity():
    _, sparse = _shift()
    w = torch.randn(6, 2, 2)
    taps = torch.tensor([0.2, 0.5, 0.3])
    for mode in ("stale", "zero"):
        hook = MessageBuffer(mode).transmitter(torch.ones(6, dtype=torch.bool))
        assert torch.equal(graph_filter(sparse, w, taps, hook), graph_filter(sparse, w, taps))


def test_draw_active_is_keyed_and_counts():
    a = draw_active(50, 7, 0, "test", 1, "layer", 3)
    assert (~a).sum() == 7
    assert torch.equal(a, draw_active(50, 7, 0, "test", 1, "layer", 3))
    assert not torch.equal(a, draw_active(50, 7, 0, "test", 1, "layer", 4))
    assert draw_active(5, 4, 0, "k", protect=0)[0]
