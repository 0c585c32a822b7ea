"""Dropped (asynchronous) agents: at a layer, n_async agents neither update nor send (paper Sec. 4, Fig. 4).

Neighbours of a dropped agent use the value it last transmitted (``stale``, paper text) or receive zeros (``zero``,
authors' code). A straggler's messages arrive late: its neighbours receive what it sent ``delay`` steps earlier.
Masks are tensors over agents; no Python loops over agents, and recorded layer outputs are never modified in place.
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
    """What every agent transmitted at each hop: the last message (fills in for dropped agents) and, when some
    agents straggle, a short history of past messages (what their neighbours receive late).

    Before any layer the buffer is empty; an agent dropped at the very first layer is taken to have transmitted
    its initial values at setup, so its stale message equals what it would have sent. Likewise a message older
    than the first step is the first one sent.
    """

    def __init__(self, mode: str) -> None:
        if mode not in ("stale", "zero"):
            raise ValueError(f"unknown async mode {mode!r}")
        self.mode = mode
        self.last: dict[int | str, torch.Tensor] = {}
        self.history: dict[int | str, list[torch.Tensor]] = {}  # channel -> sent messages, oldest first

    def transmitter(self, active: torch.Tensor | None, delay: torch.Tensor | None = None) -> Transmit:
        """A ``transmit(k, z)`` hook for one step with the given active-agent mask and per-agent delays."""
        def transmit(hop: int | str, z: torch.Tensor) -> torch.Tensor:
            sent = z
            if active is not None:
                keep = active.to(device=z.device).view(-1, *([1] * (z.dim() - 1)))
                fill = torch.zeros_like(z) if self.mode == "zero" else self.last.get(hop, z)
                sent = torch.where(keep, z, fill)
                if self.mode == "stale":
                    self.last[hop] = sent
            return self._delayed(hop, sent, delay) if delay is not None else sent

        return transmit

    def _delayed(self, hop: int | str, sent: torch.Tensor, delay: torch.Tensor) -> torch.Tensor:
        """Agent i's message from ``delay[i]`` steps ago (clamped to the oldest kept), gathered without loops."""
        past = self.history.setdefault(hop, [])
        past.append(sent)
        depth = int(delay.max()) + 1
        del past[:-depth]
        stacked = torch.stack(past[::-1])  # index j = sent j steps ago
        ago = delay.to(sent.device).clamp(max=len(past) - 1)
        return stacked[ago, torch.arange(sent.shape[0], device=sent.device)]
