"""The communication network of one run, step by step: which S, which agents take part, what neighbours receive.

Every method — the unrolled network (a step = a layer, K hops) and every baseline (a step = a round) — talks only
through :meth:`NetworkStep.aggregate` / :meth:`NetworkStep.filter` and freezes dropped agents with
:meth:`NetworkStep.keep`, so a scenario (dropped agents, time-varying graphs, lost links, ...) applies to all methods
identically. A :data:`Schedule` says what the network looks like at step t; without one, every step is the fixed S
with every agent active.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from surf.asynchrony import MessageBuffer
from surf.graph_filter import aggregate, graph_filter


@dataclass(frozen=True)
class StepConditions:
    """The network at one step; ``None`` fields mean "as usual"."""

    active: torch.Tensor | None = None  # (N,) bool: agents that update and send at this step
    shift: torch.Tensor | None = None  # the GSO used at this step (time-varying graph, failed links); None = S
    delay: torch.Tensor | None = None  # (N,) int64: agent i's messages arrive delay[i] steps late (stragglers)


Schedule = Callable[[int], StepConditions]  # step t = 1, 2, ... -> conditions at that step


def masks_schedule(masks: Sequence[torch.Tensor]) -> Schedule:
    """A schedule from a list of active-agent masks, ``masks[t - 1]`` at step t."""
    return lambda t: StepConditions(active=masks[t - 1])


class Network:
    """One run's communication: the base GSO, the schedule, and the buffer of last-sent messages (stale/zero)."""

    def __init__(self, shift: torch.Tensor, schedule: Schedule | None = None, async_mode: str = "stale") -> None:
        self.shift, self.schedule = shift, schedule
        self.buffer = MessageBuffer(async_mode)

    def step(self, t: int) -> NetworkStep:
        """The network at step ``t`` (1-based)."""
        conditions = self.schedule(t) if self.schedule is not None else StepConditions()
        shift = conditions.shift if conditions.shift is not None else self.shift
        return NetworkStep(self, shift, conditions.active, conditions.delay)


class NetworkStep:
    """Communication primitives at one step."""

    def __init__(self, network: Network, shift: torch.Tensor, active: torch.Tensor | None,
                 delay: torch.Tensor | None = None) -> None:
        self.network, self.shift, self.active = network, shift, active
        plain = active is None and delay is None
        self.transmit = None if plain else network.buffer.transmitter(active, delay)

    def aggregate(self, z: torch.Tensor, channel: int | str = 1) -> torch.Tensor:
        """One communication round ``S_t @ sent(z)``; ``channel`` separates the stale buffers of distinct messages
        (hop k of a graph filter, or the two vectors gradient tracking sends)."""
        sent = self.transmit(channel, z) if self.transmit is not None else z
        return aggregate(self.shift, sent)

    def filter(self, w: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
        """``sum_k h_k S_t^k W`` (eq. 12) over K = len(taps) - 1 rounds of this step."""
        return graph_filter(self.shift, w, taps, self.transmit)

    def keep(self, new: torch.Tensor, old: torch.Tensor, agent_dim: int = 0) -> torch.Tensor:
        """Dropped agents neither update nor send: their rows keep ``old`` (a new tensor; nothing in place)."""
        if self.active is None:
            return new
        shape = [1] * new.dim()
        shape[agent_dim] = -1
        return torch.where(self.active.to(new.device).view(shape), new, old)
