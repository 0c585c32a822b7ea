"""One communication round: every agent sums what its neighbours sent, weighted by its row of the GSO.

This is the only place where messages are combined; the graph filter (``surf.graphs.filter``), every baseline's
mixing step and a Flower node (on its own agents' rows) all call it. Its backward pass is ``S^T @ grad``, with the
transposed GSO built once per GSO and kept (torch's own CSR backward rebuilds it by sorting at every call).
"""

from __future__ import annotations

import weakref

import torch
from torch.autograd.function import once_differentiable

_TRANSPOSED: dict[int, tuple[weakref.ref, torch.Tensor]] = {}  # id(S) -> (S, S^T as CSR) while S is alive


def transposed(shift: torch.Tensor) -> torch.Tensor:
    """``S^T`` as a CSR tensor, built once per GSO object and dropped with it."""
    key = id(shift)
    entry = _TRANSPOSED.get(key)
    if entry is None or entry[0]() is not shift:
        entry = (weakref.ref(shift, lambda _: _TRANSPOSED.pop(key, None)), shift.t().to_sparse_csr())
        _TRANSPOSED[key] = entry
    return entry[1]


class SparseRound(torch.autograd.Function):
    """``S @ Z`` for a sparse CSR S (no gradient) and dense Z (N, F); backward ``S^T @ grad`` with a cached S^T."""

    @staticmethod
    def forward(ctx, shift: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        ctx.shift = shift
        return torch.matmul(shift, flat)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return None, torch.matmul(transposed(ctx.shift), grad)


def aggregate(shift: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One round ``S @ Z`` for z of shape (N, ...) (trailing dims flattened for the sparse matmul).

    ``shift`` may also be some agents' rows over the columns they hear from, (M, N'), z (N', ...) -> (M, ...).
    """
    flat = z.reshape(z.shape[0], -1)
    if shift.layout == torch.sparse_csr and flat.requires_grad and torch.is_grad_enabled():
        out = SparseRound.apply(shift, flat)
    else:
        out = torch.matmul(shift, flat)
    return out.reshape(shift.shape[0], *z.shape[1:])
