"""Graph filters: the communication part of a U-DGD layer (paper eq. 12).

``aggregate`` is one communication round (each agent sums what its neighbours sent, weighted by its row of S);
``graph_filter`` applies ``sum_k h_k S^k W`` as K rounds. A ``transmit`` hook sees what agents send at each hop, so
dropped agents, stale buffers or lost links change the messages, never the filter code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Transmit = Callable[[int, torch.Tensor], torch.Tensor]


def aggregate(shift: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One round: ``S @ Z`` for z of shape (N, ...) (trailing dims flattened for the sparse matmul).

    ``shift`` may also be some agents' rows over the columns they hear from, (M, N'), z (N', ...) -> (M, ...).
    """
    flat = z.reshape(z.shape[0], -1)
    return torch.matmul(shift, flat).reshape(shift.shape[0], *z.shape[1:])


def graph_filter(
    shift: torch.Tensor, w: torch.Tensor, taps: torch.Tensor, transmit: Transmit | None = None
) -> torch.Tensor:
    """``H(W) = sum_{k=0..K} h_k S^k W`` (eq. 12); K = len(taps) - 1 rounds. taps may be (K+1,) or (K+1, N)."""
    z = w
    out = _scale(taps[0], w)
    for k in range(1, taps.shape[0]):
        sent = transmit(k, z) if transmit is not None else z
        z = aggregate(shift, sent)
        out = out + _scale(taps[k], z)
    return out


def _scale(tap: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Multiply by a scalar tap, or by a per-agent tap vector broadcast over the trailing dims."""
    if tap.dim() == 0:
        return tap * z
    return tap.reshape(-1, *([1] * (z.dim() - 1))) * z
