"""The graph filter of a U-DGD layer (paper eq. 12) as a PyG ``MessagePassing`` module.

``H(W) = sum_{k=0..K} h_k S^k W``: K communication rounds, each one ``propagate`` over the sparse GSO (PyG's fused
``message_and_aggregate`` = :func:`surf.graphs.aggregate.aggregate`, a sparse matmul, never a Python loop over
edges). A PyG user can drop :class:`GraphFilter` into a model with a sparse ``adj_t`` (rows = receivers) or with
``edge_index`` / ``edge_weight`` (messages j -> i weighted by ``S_ij``). A ``transmit`` hook sees what agents send at
each hop, so dropped agents, stale buffers or lost links change the messages, never the filter code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch_geometric.nn import MessagePassing

from surf.graphs.aggregate import aggregate

Transmit = Callable[[int, torch.Tensor], torch.Tensor]  # (hop k, what agents would send) -> what they send


class GraphFilter(MessagePassing):
    """``sum_k h_k S^k X`` (eq. 12) for node features X (N, ...); K = len(taps) - 1 rounds."""

    def __init__(self) -> None:
        super().__init__(aggr="add")

    def forward(self, x: torch.Tensor, adj_t: torch.Tensor, taps: torch.Tensor, transmit: Transmit | None = None,
                edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        """taps (K+1,) shared by all agents or (K+1, N) per agent; ``adj_t`` a sparse GSO or an ``edge_index``."""
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


def _scale(tap: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Multiply by a scalar tap, or by a per-agent tap vector broadcast over the trailing dims."""
    if tap.dim() == 0:
        return tap * z
    return tap.reshape(-1, *([1] * (z.dim() - 1))) * z
