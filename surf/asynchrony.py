"""Dropped (asynchronous) agents: at a layer, n_async agents neither update nor send (paper Sec. 4, Fig. 4).

Neighbours of a dropped agent use the value it last transmitted (``stale``, paper text) or receive zeros (``zero``,
authors' code). Masks are tensors over agents; no Python loops over agents, and recorded layer outputs are never
modified in place.
"""

from __future__ import annotations

import torch

from surf.graph_filter import Transmit
from surf.seeding import torch_generator


def draw_active(num_agents: int, n_async: int, seed: int, *key: object, protect: int | None = None) -> torch.Tensor:
    """Bool mask (N,) of agents that take part, with ``n_async`` dropped, keyed by ``(seed, "async", *key)``.

    ``protect`` (e.g. the star graph's server) is never dropped.
    """
    active = torch.ones(num_agents, dtype=torch.bool)
    if n_async == 0:
        return active
    scores = torch.rand(num_agents, generator=torch_generator(seed, "async", *key))
    if protect is not None:
        scores[protect] = 2.0
    active[torch.argsort(scores)[:n_async]] = False
    return active


class MessageBuffer:
    """What every agent last transmitted at each hop, used to fill in for dropped agents.

    Before any layer the buffer is empty; an agent dropped at the very first layer is taken to have transmitted
    its initial values at setup, so its stale message equals what it would have sent.
    """

    def __init__(self, mode: str) -> None:
        if mode not in ("stale", "zero"):
            raise ValueError(f"unknown async mode {mode!r}")
        self.mode = mode
        self.last: dict[int, torch.Tensor] = {}

    def transmitter(self, active: torch.Tensor) -> Transmit:
        """A ``transmit(k, z)`` hook for one layer with the given active-agent mask."""
        def transmit(hop: int, z: torch.Tensor) -> torch.Tensor:
            keep = active.to(device=z.device).view(-1, *([1] * (z.dim() - 1)))
            fill = torch.zeros_like(z) if self.mode == "zero" else self.last.get(hop, z)
            sent = torch.where(keep, z, fill)
            if self.mode == "stale":
                self.last[hop] = sent
            return sent

        return transmit
