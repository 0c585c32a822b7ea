"""The communication network of one run, step by step: which S, which agents take part, what neighbours receive.

Dropped (asynchronous) agents neither update nor send (paper Sec. 4, Fig. 4): neighbours of a silent agent use the
value it last transmitted (``stale``, paper text) or receive zeros (``zero``, authors' code); a straggler's messages
arrive ``delay`` steps late. Which agents are silent is decided elsewhere (``surf.scenarios``); the
:class:`MessageBuffer` here only remembers what was sent. Masks are tensors over agents, never Python loops.

Every method — the unrolled network (a step = a layer, K hops) and every baseline (a step = a round) — talks only
through :meth:`NetworkStep.aggregate` / :meth:`NetworkStep.filter` and freezes dropped agents with
:meth:`NetworkStep.keep`, so a scenario (dropped agents, time-varying graphs, lost links, ...) applies to all methods
identically. A :data:`Schedule` says what the network looks like at step t; without one, every step is the fixed S
with every agent active.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from surf.graphs.aggregate import aggregate

if TYPE_CHECKING:
    from surf.graphs.filter import GraphFilter, Transmit


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


@functools.cache
def graph_filter_module() -> GraphFilter:
    """The shared, stateless :class:`~surf.graphs.filter.GraphFilter`; PyG is imported on the first call (it takes
    seconds to import, and ``surf list``, ``surf --help`` and the baselines never need it)."""
    from surf.graphs.filter import GraphFilter

    return GraphFilter()


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

    def filter(self, w: torch.Tensor, taps: torch.Tensor, recompute: bool = False) -> torch.Tensor:
        """``sum_k h_k S_t^k W`` (eq. 12) over K = len(taps) - 1 rounds of this step (``recompute``: its hops
        rebuilt in the backward pass instead of kept, :class:`~surf.graphs.filter.RecomputedFilter`)."""
        return graph_filter_module()(w, self.shift, taps, self.transmit, recompute=recompute)

    def keep(self, new: torch.Tensor, old: torch.Tensor, agent_dim: int = 0) -> torch.Tensor:
        """Dropped agents neither update nor send: their rows keep ``old`` (a new tensor; nothing in place)."""
        if self.active is None:
            return new
        shape = [1] * new.dim()
        shape[agent_dim] = -1
        return torch.where(self.active.to(new.device).view(shape), new, old)


class MessageBuffer:
    """What every agent transmitted at each hop: the last message (fills in for dropped agents) and, when some
    agents straggle, a short history of past messages (what their neighbours receive late).

    Before any layer the buffer is empty; an agent dropped at the very first layer is taken to have transmitted
    its initial values at setup, so its stale message equals what it would have sent. Likewise a message older
    than the first step is the first one sent. ``store`` keeps the last messages (``"sent:<channel>"`` keys) in a
    mapping the caller owns, e.g. a Flower node's serialized state.
    """

    def __init__(self, mode: str, store: dict[str, torch.Tensor] | None = None) -> None:
        if mode not in ("stale", "zero"):
            raise ValueError(f"unknown async mode {mode!r}")
        self.mode = mode
        self.last: dict[str, torch.Tensor] = {} if store is None else store
        self.history: dict[int | str, list[torch.Tensor]] = {}  # channel -> sent messages, oldest first

    def transmitter(self, active: torch.Tensor | None, delay: torch.Tensor | None = None) -> Transmit:
        """A ``transmit(k, z)`` hook for one step with the given mask of agents whose message is current (N,) — or
        (N, T) for T tasks side by side in z (N, T, ...) — and per-agent delays."""
        def transmit(hop: int | str, z: torch.Tensor) -> torch.Tensor:
            sent = z
            if active is not None:
                keep = active.to(device=z.device).reshape(*active.shape, *([1] * (z.dim() - active.dim())))
                key = f"sent:{hop}"
                fill = torch.zeros_like(z) if self.mode == "zero" else self.last.get(key, z)
                sent = torch.where(keep, z, fill)
                if self.mode == "stale":
                    self.last[key] = sent
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
