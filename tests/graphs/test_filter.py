"""GraphFilter (eq. 12) against dense matrix powers, as a PyG module on a sparse adj_t and on edge_index, and the
transmit hook for dropped agents, and the temporary file PyG generates for it."""

import os
import subprocess
import sys

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


def _filter_and_gradients(taps: torch.Tensor, recompute: bool, transmit=None):
    dense, _ = _shift(8, seed=3)
    sparse = dense.double().to_sparse_csr()
    w = torch.randn(8, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    taps = taps.clone().requires_grad_(True)
    out = graph_filter(w, sparse, taps, transmit, recompute=recompute)
    weights = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    return (out, *torch.autograd.grad((out * weights).sum(), [w, taps]))


def test_recomputed_filter_equals_the_kept_one_in_value_and_every_gradient():
    """``recompute`` keeps only the input and rebuilds the hops in the backward pass: same output bit for bit, same
    gradients for the input (Horner's rule with S^T) and for shared and per-agent taps."""
    for taps in (torch.tensor([0.3, -0.5, 1.2], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
                 torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))):
        kept, recomputed = _filter_and_gradients(taps, False), _filter_and_gradients(taps, True)
        assert torch.equal(kept[0], recomputed[0])
        for a, b in zip(kept[1:], recomputed[1:], strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-12)


def test_recomputed_filter_saves_only_its_input():
    _, sparse = _shift(8)
    w = torch.randn(8, 3, 2, requires_grad=True)
    for recompute, saved in ((False, 3), (True, 1)):  # kept: x, S x, S^2 x (for the taps); recomputed: x only
        storages: set[int] = set()

        def pack(t: torch.Tensor, seen: set[int] = storages) -> torch.Tensor:
            seen.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            graph_filter(w, sparse, torch.tensor([0.2, 0.5, 0.3], requires_grad=True), recompute=recompute)
        assert len(storages) - 1 == saved  # minus the taps


def test_recompute_is_ignored_when_messages_are_transmitted():
    """Dropped agents' stale messages are state the backward pass cannot replay: the kept filter runs."""
    active = torch.tensor([True, False] * 4)
    grads = [_filter_and_gradients(torch.tensor([0.3, 0.4, 0.3], dtype=torch.float64), recompute,
                                   MessageBuffer("zero").transmitter(active)) for recompute in (False, True)]
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_no_generated_propagate_is_left_in_the_temporary_folder_even_by_a_killed_process(tmp_path):
    """PyG writes the generated ``propagate`` to the temporary folder (once per process) and never deletes it. The
    filter deletes it as soon as it is loaded, so a process killed with SIGKILL (as Ray ends its workers) leaves
    nothing, and the source stays visible to ``inspect`` and tracebacks."""
    script = ("import inspect, os, signal, sys; from surf.graphs.filter import GraphFilter; GraphFilter(); "
              "GraphFilter(); print(len([f for f in os.listdir(sys.argv[1]) if f.endswith('.py')])); "
              "print('def propagate' in inspect.getsource(GraphFilter.propagate), flush=True); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env={**os.environ, "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert done.stdout.split() == ["0", "True"]
    assert [f for f in os.listdir(tmp_path) if f.endswith(".py")] == []
