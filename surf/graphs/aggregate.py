"""One communication round: every agent sums what its neighbours sent, weighted by its row of the GSO.

This is the only place where messages are combined; the graph filter (``surf.graphs.filter``), every baseline's
mixing step and a Flower node (on its own agents' rows) all call it.
"""

from __future__ import annotations

import torch


def aggregate(shift: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One round ``S @ Z`` for z of shape (N, ...) (trailing dims flattened for the sparse matmul).

    ``shift`` may also be some agents' rows over the columns they hear from, (M, N'), z (N', ...) -> (M, ...).
    """
    flat = z.reshape(z.shape[0], -1)
    return torch.matmul(shift, flat).reshape(shift.shape[0], *z.shape[1:])
