"""The graph filter of a U-DGD layer (paper eq. 12) as a PyG ``MessagePassing`` module.

``H(W) = sum_{k=0..K} h_k S^k W``: K communication rounds, each one ``propagate`` over the sparse GSO (PyG's fused
``message_and_aggregate`` = :func:`surf.graphs.aggregate.aggregate`, a sparse matmul, never a Python loop over
edges). A PyG user can drop :class:`GraphFilter` into a model with a sparse ``adj_t`` (rows = receivers) or with
``edge_index`` / ``edge_weight`` (messages j -> i weighted by ``S_ij``). A ``transmit`` hook sees what agents send at
each hop, so dropped agents, stale buffers or lost links change the messages, never the filter code.
"""

from __future__ import annotations

import linecache
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable
from torch_geometric.nn import MessagePassing

from surf.graphs.aggregate import aggregate, transposed
from surf.utils.invariant import scaled

Transmit = Callable[[int, torch.Tensor], torch.Tensor]  # (hop k, what agents would send) -> what they send


def _delete_generated_source(cls: type) -> None:
    """PyG writes the ``propagate`` it generates for a ``MessagePassing`` class to a temporary file, once per process,
    and never deletes it (``torch_geometric.template.module_from_template``, ``delete=False``). Deleting it at exit
    was not enough: a process ended by a signal or by ``os._exit`` (Ray's workers, Flower's actors) skips ``atexit``,
    and CI left some thirty files per run. So the source moves into ``linecache`` (tracebacks and ``inspect`` still
    show it) and the file is deleted as soon as the module is loaded."""
    module = sys.modules.get(f"{cls.__module__}_{cls.__name__}_propagate")
    path = getattr(module, "__file__", None)
    if not path or Path(path).parent != Path(tempfile.gettempdir()) or not Path(path).is_file():
        return
    source = Path(path).read_text()
    linecache.cache[path] = (len(source), None, source.splitlines(keepends=True), path)  # mtime None: never rechecked
    Path(path).unlink(missing_ok=True)


class GraphFilter(MessagePassing):
    """``sum_k h_k S^k X`` (eq. 12) for node features X (N, ...); K = len(taps) - 1 rounds."""

    def __init__(self) -> None:
        super().__init__(aggr="add")
        _delete_generated_source(type(self))

    def forward(self, x: torch.Tensor, adj_t: torch.Tensor, taps: torch.Tensor, transmit: Transmit | None = None,
                edge_weight: torch.Tensor | None = None, recompute: bool = False) -> torch.Tensor:
        """taps (K+1,) shared by all agents or (K+1, N) per agent; ``adj_t`` a sparse GSO or an ``edge_index``.

        ``recompute``: keep only x for the backward pass and rebuild the hops ``S^k x`` there (K sparse products)
        instead of keeping K hop outputs per layer — for a sparse GSO whose messages are what the agents computed
        (no ``transmit``); otherwise ignored.
        """
        if recompute and transmit is None and adj_t.layout == torch.sparse_csr and torch.is_grad_enabled():
            return RecomputedFilter.apply(x, taps, adj_t, self)
        return self._filter(x, adj_t, taps, transmit, edge_weight)

    def _filter(self, x: torch.Tensor, adj_t: torch.Tensor, taps: torch.Tensor, transmit: Transmit | None = None,
                edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        z = x
        out = _scale(taps[0], x)
        for k in range(1, taps.shape[0]):
            sent = transmit(k, z) if transmit is not None else z
            z = self.hop(sent, adj_t, edge_weight)
            out = out + _scale(taps[k], z)
        return out

    def hop(self, x: torch.Tensor, adj_t: torch.Tensor, edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        """One communication round ``S X`` via ``propagate`` (trailing feature dims flattened)."""
        flat = x.reshape(x.shape[0], -1)
        out = self.propagate(adj_t, x=flat, edge_weight=edge_weight)
        return out.reshape(out.shape[0], *x.shape[1:])

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return edge_weight.view(-1, 1).to(x_j.dtype) * x_j

    def message_and_aggregate(self, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return aggregate(adj_t, x)


class RecomputedFilter(torch.autograd.Function):
    """``sum_k h_k S^k x`` keeping only x: the backward rebuilds the hops ``z_k = S^k x`` for the taps' gradients
    ``<G, z_k>`` (per agent for per-agent taps) and returns ``grad_x = sum_k (S^T)^k diag(h_k) G`` by Horner's rule."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, taps: torch.Tensor, adj_t: torch.Tensor, module: GraphFilter) -> torch.Tensor:
        ctx.save_for_backward(x, taps)
        ctx.adj_t, ctx.module = adj_t, module
        return module._filter(x, adj_t, taps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, taps = ctx.saved_tensors
        z, tap_grads = x, []
        for k in range(taps.shape[0]):
            z = z if k == 0 else ctx.module.hop(z, ctx.adj_t)
            products = grad * z
            tap_grads.append(products.sum() if taps.dim() == 1 else products.flatten(1).sum(1))
        back = transposed(ctx.adj_t)
        grad_x = _scale(taps[-1], grad)
        for k in range(taps.shape[0] - 2, -1, -1):
            grad_x = aggregate(back, grad_x) + _scale(taps[k], grad)
        return grad_x, torch.stack(tap_grads), None, None


def _scale(tap: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Multiply by a scalar tap, or by a per-agent tap vector broadcast over the trailing dims."""
    if tap.dim() == 0:
        return scaled(tap, z)
    return tap.reshape(-1, *([1] * (z.dim() - 1))) * z
