"""One Flower node: a shard of agents computing their own graph-filter terms and local steps (no Flower imports).

A node holds the rows of its own agents only: their data, their rows of S over the columns it hears from (its own
agents, then its agents' outside neighbours), their models ``W_i``, previous updates ``delta_i``, the last message
received on every channel (stale semantics) and their per-layer metrics. The mutable part is a flat
``dict[str, Tensor]`` that the ClientApp keeps in Flower's ``Context.state``; the immutable part (data, rows of S,
the rule with the broadcast parameters) is rebuilt from the setup message and cached per process.

Protocol of one step (a U-DGD layer or a DGD round) with K hops, seen from a node:
hop k = 1..K: receive the channel-k messages of the outside neighbours, fill the missing ones (stale: last message
on that channel; zero: zeros), ``z_k = aggregate(rows of S, sent)`` (one hop, the same ``aggregate`` as the
vectorized engine), ``out += h_k z_k``; reply ``z_k`` (the channel-(k+1) message) or, at k = K, the new model
``out - update`` (the next step's channel-1 message), kept pending until the relay confirms delivery.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from surf.data.batches import batch_indices, initial_weights
from surf.graphs.aggregate import aggregate
from surf.graphs.network import MessageBuffer
from surf.problems.softmax import agent_accuracies, agent_gradients, agent_losses

if TYPE_CHECKING:
    from surf.data.tasks import Task

Outbox = dict[int, torch.Tensor]  # agent id -> its message, (T, d+1, C) for the node's T tasks


@dataclass
class ShardSpec:
    """What the relay tells a node at setup (besides the rows of S and the broadcast parameters)."""

    job: str
    config_yaml: str
    method: str  # surf | dgd | dsgd
    tasks: list[tuple[str, int, bool]]  # (split, index, relabelled)
    agents: list[int]  # the node's own agents
    columns: list[int]  # agents it hears from: its own agents first, then outside neighbours
    async_mode: str = "stale"
    step_size: float = 0.0  # dgd / dsgd
    momentum: float = 0.0
    steps: int = 0  # dgd / dsgd rounds
    keep_history: bool = False  # keep every layer's model for the final report (tests, audits)
    uid: str = ""  # unique per relay run: processes cache shards by (uid, agents)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShardSpec:
        raw = json.loads(text)
        raw["tasks"] = [tuple(t) for t in raw["tasks"]]
        return cls(**raw)


class Shard:
    """The immutable side of a node: its spec, rule, data rows and rows of S (built once per process and job).

    ``tasks`` are the full tasks (shared by every shard of the process); the node keeps and uses its own rows only.
    """

    def __init__(self, spec: ShardSpec, rows: torch.Tensor, rule: Any, tasks: list[Task], seed: int,
                 w0_std: float) -> None:
        self.spec, self.rows, self.rule, self.tasks = spec, rows, rule, tasks
        self.seed, self.w0_std = seed, w0_std
        self.agents = torch.tensor(spec.agents)
        self.data = [(t.x_train[self.agents], t.y_train[self.agents], t.x_test[self.agents], t.y_test[self.agents])
                     for t in self.tasks]
        self.num_layers = rule.steps

    # ------------------------------------------------------------------ setup and metrics
    def setup(self, state: dict[str, torch.Tensor]) -> Outbox:
        """W_0 of the node's agents (the keyed full draw, sliced) -> state; reply the channel-1 messages."""
        w = torch.stack([initial_weights(t, self.seed, self.w0_std)[self.agents] for t in self.tasks], dim=1)
        num_metrics = (self.num_layers + 1, len(self.spec.agents), len(self.tasks))
        state.update(w=w, delta=torch.zeros_like(w), recorded=torch.tensor(-1),
                     accuracy=torch.zeros(num_metrics), loss=torch.zeros(num_metrics), grad2=torch.zeros(num_metrics))
        if self.spec.keep_history:
            state["history"] = torch.zeros(self.num_layers + 1, *w.shape)
        self._record_until(state, 0)
        return self._outbox(w)

    def _record_until(self, state: dict[str, torch.Tensor], layer: int) -> None:
        """Metrics (and history) of the current model for every layer up to ``layer`` not yet recorded."""
        w = state["w"]
        for index in range(int(state["recorded"]) + 1, layer + 1):
            for t, (x, y, x_test, y_test) in enumerate(self.data):
                state["accuracy"][index, :, t] = agent_accuracies(w[:, t], x_test, y_test)
                state["loss"][index, :, t] = agent_losses(w[:, t], x_test, y_test)
                state["grad2"][index, :, t] = agent_gradients(w[:, t], x, y).pow(2).sum(dim=(-2, -1))
            if "history" in state:
                state["history"][index] = w
        state["recorded"] = torch.tensor(max(layer, int(state["recorded"])))

    def _commit(self, state: dict[str, torch.Tensor], dropped: set[int], layer: int) -> None:
        """Apply the pending model unless the relay lost it (then the agents were dropped). A dropped agent keeps
        its whole state, W and delta, as in the engine (``UnrolledDGD.forward``) and every baseline."""
        if "w_new" in state:
            pending, pending_layer = state.pop("w_new"), int(state.pop("pending"))
            moved = state["active"] & (pending_layer not in dropped)  # (agents, T)
            keep = moved.view(*moved.shape, 1, 1)
            state["delta"] = torch.where(keep, pending - state["w"], state["delta"])
            state["w"] = torch.where(keep, pending, state["w"])
        self._record_until(state, layer)

    # ------------------------------------------------------------------ one hop
    def hop(self, state: dict[str, torch.Tensor], layer: int, k: int, inbox: Outbox,
            present: dict[int, torch.Tensor], inactive: torch.Tensor | None, dropped: set[int]) -> Outbox:
        """Hop ``k`` of step ``layer`` (layer 0 = priming the stale buffers at setup, everyone present).

        ``present[j]`` (T,) says for which tasks neighbour j's message counts, ``inactive`` (agents, T) which own
        agents sit this step out, ``dropped`` the steps in which the relay lost this node's messages.
        """
        num_tasks = len(self.tasks)
        if k == 1:
            if layer > 0:
                self._commit(state, dropped, layer - 1)
            state["z"] = state["w"]
            state["out"] = self.rule.taps(layer)[0] * state["w"] if layer > 0 else state["w"]
            own = torch.zeros(len(self.spec.agents), num_tasks, dtype=torch.bool)
            state["active"] = ~(inactive if inactive is not None and layer > 0 else own)
        outside = self.spec.columns[len(self.spec.agents):]
        z = state["z"]
        received = torch.stack([inbox[j] if j in inbox else torch.zeros_like(z[0]) for j in outside]) \
            if outside else z[:0]
        ok = torch.cat([state["active"], torch.stack([present.get(j, torch.zeros(num_tasks, dtype=torch.bool))
                                                      for j in outside]) if outside else state["active"][:0]])
        sent = MessageBuffer(self.spec.async_mode, store=state).transmitter(ok)(k, torch.cat([z, received]))
        z = aggregate(self.rows, sent)  # one hop: the agents' rows of S times what they heard
        state["z"] = z
        if layer == 0:  # priming: channel k+1 carries z_k; after the last hop, channel 1 carries W_0 again
            return self._outbox(z if k < self.rule.hops else state["w"])
        state["out"] = state["out"] + self.rule.taps(layer)[k] * z  # eq. 12, accumulated hop by hop
        if k < self.rule.hops:
            return self._outbox(z)
        new = self._step(state, layer)
        state["w_new"] = torch.where(state["active"].view(*state["active"].shape, 1, 1), new, state["w"])
        state["pending"] = torch.tensor(layer)
        return self._outbox(state["w_new"])

    def _step(self, state: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
        """``W_l = H(W_{l-1}) - update`` (eq. 11 / eq. 10) for every task, on the node's own rows."""
        w, delta, filtered = state["w"], state["delta"], state["out"]
        new = []
        for t, (task, (x, y, _, _)) in enumerate(zip(self.tasks, self.data, strict=True)):
            idx = batch_indices(task, self.seed, layer, self.rule.batch_size)[self.agents]
            new.append(filtered[:, t] - self.rule.update(layer, w[:, t], delta[:, t], filtered[:, t], x, y, idx))
        return torch.stack(new, dim=1)

    def finish(self, state: dict[str, torch.Tensor], dropped: set[int]) -> dict[str, torch.Tensor]:
        """Commit the last step and hand over the per-layer metrics (and history when asked)."""
        self._commit(state, dropped, self.num_layers)
        keys = ("accuracy", "loss", "grad2", "history") if self.spec.keep_history else ("accuracy", "loss", "grad2")
        return {key: state[key] for key in keys}

    def _outbox(self, values: torch.Tensor) -> Outbox:
        return {agent: values[i] for i, agent in enumerate(self.spec.agents)}
