"""Per-step graph shift operators: a GSO with lost messages (link failures) and the one-peer exponential graph.

Lost messages: a lost message contributes nothing to its receiver (``renormalize=False``; the receiver's weights are
not renormalized) or its weight moves onto the receiver's self-loop (``renormalize=True``: rows of a stochastic S stay
stochastic). A self-loop is not a message and is never lost.
"""

from __future__ import annotations

import torch


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_csr_tensor(crow, col, values, size=(n, n), check_invariants=False)  # "beta": surf/__init__


def drop_links(shift: torch.Tensor, p: float, gen: torch.Generator, symmetric: bool, renormalize: bool) -> torch.Tensor:
    """S with each off-diagonal entry (a message j -> i) lost with probability ``p``; the same S when none is."""
    csr = (shift if shift.layout == torch.sparse_csr else shift.to_sparse_csr()).cpu()
    crow, col, values = csr.crow_indices(), csr.col_indices(), csr.values()
    n = csr.shape[0]
    row = torch.repeat_interleave(torch.arange(n), crow.diff())
    if symmetric:  # one draw per undirected pair {i, j}
        _, pair = torch.unique(torch.minimum(row, col) * n + torch.maximum(row, col), return_inverse=True)
        u = torch.rand(int(pair.max()) + 1 if pair.numel() else 0, generator=gen)[pair]
    else:
        u = torch.rand(row.shape[0], generator=gen)
    lost = (row != col) & (u < p)
    if not bool(lost.any()):
        return shift
    kept = torch.where(lost, torch.zeros_like(values), values)
    if not renormalize:
        return _csr(crow, col, kept, n).to(shift.device)
    mass = torch.zeros(n, dtype=values.dtype).index_add_(0, row, values * lost)
    diagonal = torch.arange(n)
    indices = torch.cat([torch.stack([row, col]), torch.stack([diagonal, diagonal])], dim=1)
    moved = torch.sparse_coo_tensor(indices, torch.cat([kept, mass]), (n, n), check_invariants=False).coalesce()
    return moved.to_sparse_csr().to(shift.device)


def one_peer_shift(n: int, step: int) -> torch.Tensor:
    """``(I + P_t) / 2`` with P_t the one-peer exponential permutation of step t (row i: i and i + 2^j mod N)."""
    rounds = max((n - 1).bit_length(), 1)
    hop = 2 ** ((step - 1) % rounds) % n
    agents = torch.arange(n)
    cols = torch.sort(torch.stack([agents, (agents + hop) % n], dim=1), dim=1).values.reshape(-1)
    return _csr(torch.arange(0, 2 * n + 1, 2), cols, torch.full((2 * n,), 0.5), n)
