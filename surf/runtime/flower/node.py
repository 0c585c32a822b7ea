"""One Flower node: a shard of agents computing their own graph-filter terms and local steps (no Flower imports).

A node holds the rows of its own agents only: their share of every task (``Task.agents``: their samples, nobody
else's), their rows of S over the columns it hears from (its own agents, then their outside neighbours), their
models ``W_i``, previous updates ``delta_i``, the last message received on every channel (stale semantics) and their
per-layer metrics. W_0 and the mini-batches are keyed per agent (``surf.data.batches``), so the node draws exactly
its agents' numbers. The mutable part is a flat ``dict[str, Tensor]`` that the ClientApp keeps in Flower's
``Context.state``; the immutable part (data, rows of S, the rule with the broadcast parameters) is rebuilt from the
setup message and the node's data, and cached per process.

Protocol of one step (a U-DGD layer or a DGD round) with K hops, seen from a node:
hop k = 1..K: receive the channel-k messages of the outside neighbours, fill the missing ones (stale: last message
on that channel; zero: zeros), ``z_k = aggregate(rows of S, sent)`` (one hop, the same ``aggregate`` as the
vectorized engine), ``out += h_k z_k``; reply ``z_k`` (the channel-(k+1) message) or, at k = K, the new model
``out - update`` (the next step's channel-1 message), kept pending until the relay confirms delivery. Replies are
packed: one block per destination node with the rows of the agents it hears from (``routes``), leaving out agents
that sit the consuming round out (``quiet``); the ClientApp sends all blocks in one Array.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from surf.data.batches import batch_indices, initial_weights
from surf.graphs.aggregate import aggregate
from surf.graphs.network import MessageBuffer
from surf.problems.softmax import agent_gradients, agent_metrics

if TYPE_CHECKING:
    from surf.data.tasks import Task

Inbox = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # agents heard from (A,), their rows, present (A, T)


FEATURE, PENDING = "feature:", "pending:"  # node-state keys of the step features' state and of its pending update


class Outbox(NamedTuple):
    """A node's reply: one block of rows per destination node, the blocks one after the other."""

    order: list[int]  # destination nodes
    counts: list[int]  # rows in each destination's block
    agents: torch.Tensor  # (A,) the agent of every row
    rows: torch.Tensor  # (A, T, d+1, C)


@dataclass
class ShardSpec:
    """What the relay tells a node at setup (besides the rows of S and the broadcast parameters)."""

    job: str
    config_yaml: str
    method: str  # surf | dgd | dsgd
    tasks: list[tuple[str, int, bool]]  # (split, index, relabelled)
    agents: list[int]  # the node's own agents
    columns: list[int]  # agents it hears from: its own agents first, then outside neighbours
    routes: dict[str, list[int]] = field(default_factory=dict)  # destination shard -> own agents it hears from
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
    """The immutable side of a node: its spec, rule, its agents' share of the tasks and its rows of S."""

    def __init__(self, spec: ShardSpec, rows: torch.Tensor, rule: Any, tasks: list[Task], seed: int,
                 w0_std: float, source: str = "task sampler") -> None:
        self.spec, self.rows, self.rule, self.tasks = spec, rows, rule, tasks
        self.seed, self.w0_std, self.source = seed, w0_std, source  # source: where the node's data came from
        self.data = [(t.x_train, t.y_train, t.x_test, t.y_test) for t in tasks]
        self.num_layers = rule.steps
        own = {agent: i for i, agent in enumerate(spec.agents)}
        self.agents = torch.tensor(spec.agents, dtype=torch.int64)
        self.route_order = torch.tensor([int(d) for d in spec.routes], dtype=torch.int64)  # destination nodes
        routes = [torch.tensor([own[a] for a in agents], dtype=torch.int64) for agents in spec.routes.values()]
        self.route_rows = torch.cat(routes) if routes else torch.zeros(0, dtype=torch.int64)  # own rows, by route
        self.route_of = torch.repeat_interleave(torch.tensor([len(r) for r in routes], dtype=torch.int64))
        self.outside, self.outside_order = torch.sort(torch.tensor(spec.columns[len(spec.agents):], dtype=torch.int64))

    def positions(self, agents: torch.Tensor) -> torch.Tensor:
        """Where the outside agents ``agents`` sit among the node's outside columns (a ValueError for a stranger)."""
        found = torch.searchsorted(self.outside, agents).clamp(max=max(len(self.outside) - 1, 0))
        if len(agents) and (not len(self.outside) or not torch.equal(self.outside[found], agents)):
            raise ValueError(f"node of agents {self.spec.agents[:4]}... got messages of agents it does not hear from")
        return self.outside_order[found]

    # ------------------------------------------------------------------ setup and metrics
    def setup(self, state: dict[str, torch.Tensor], quiet: torch.Tensor | None) -> Outbox:
        """W_0 of the node's agents (keyed per agent) -> state; reply the channel-1 messages."""
        w = torch.stack([initial_weights(task, self.seed, self.w0_std) for task in self.tasks], dim=1)
        num_metrics = (self.num_layers + 1, len(self.spec.agents), len(self.tasks))
        state.update(w=w, delta=torch.zeros_like(w), recorded=torch.tensor(-1),
                     accuracy=torch.zeros(num_metrics), loss=torch.zeros(num_metrics), grad2=torch.zeros(num_metrics))
        state.update({FEATURE + name: value for name, value in self.rule.initial_features(w).items()})
        if self.spec.keep_history:
            state["history"] = torch.zeros(self.num_layers + 1, *w.shape)
        self._record_until(state, 0)
        return self.pack(w, quiet)

    def _record_until(self, state: dict[str, torch.Tensor], layer: int) -> list[torch.Tensor] | None:
        """Metrics (and history) of the current model for every layer up to ``layer`` not yet recorded; returns the
        agents' full local gradients at that model per task (None when nothing was left to record)."""
        w, first = state["w"], int(state["recorded"]) + 1
        if first > layer:
            return None
        layers = slice(first, layer + 1)  # a node that missed steps kept W: the same metrics for each missed layer
        gradients = [agent_gradients(w[:, t], x, y) for t, (x, y, _, _) in enumerate(self.data)]
        for t, (_, _, x_test, y_test) in enumerate(self.data):
            state["accuracy"][layers, :, t], state["loss"][layers, :, t] = agent_metrics(w[:, t], x_test, y_test)
            state["grad2"][layers, :, t] = gradients[t].pow(2).sum(dim=(-2, -1))
        if "history" in state:
            state["history"][layers] = w
        state["recorded"] = torch.tensor(layer)
        return gradients

    def _commit(self, state: dict[str, torch.Tensor], lost: set[int], layer: int) -> list[torch.Tensor] | None:
        """Before step ``layer + 1``: apply the pending model unless the relay lost it, and record the metrics up to
        ``layer`` (returns the gradients :meth:`_record_until` computed at the resulting model). Agents whose model
        was not delivered (scheduled out of that step, or the relay lost it, or the node missed the steps since) keep
        their whole state, W and delta, as in the engine (``UnrolledDGD.forward``) and every baseline."""
        if "w_new" in state:
            pending, step = state.pop("w_new"), int(state.pop("pending"))
            moved = state["active"] & (step not in lost)  # (agents, T)
            keep = moved.view(*moved.shape, 1, 1)
            state["delta"] = torch.where(keep, pending - state["w"], state["delta"])
            state["w"] = torch.where(keep, pending, state["w"])
            for key in [key for key in state if key.startswith(PENDING)]:  # step features: frozen with the model
                name = FEATURE + key[len(PENDING):]
                state[name] = torch.where(keep, state.pop(key), state[name])
        return self._record_until(state, layer)

    # ------------------------------------------------------------------ one hop
    def hop(self, state: dict[str, torch.Tensor], layer: int, k: int, inbox: Inbox, inactive: torch.Tensor | None,
            quiet: torch.Tensor | None, lost: set[int]) -> Outbox:
        """Hop ``k`` of step ``layer`` (layer 0 = priming the stale buffers at setup, everyone present).

        ``inbox`` holds the outside agents heard from, their rows and for which tasks each counts; ``inactive``
        (agents, T) marks own agents that sit this step out, ``quiet`` those that sit out the round consuming this
        reply, ``lost`` the steps in which the relay lost this node's messages.
        """
        num_tasks, own = len(self.tasks), len(self.spec.agents)
        gradients = None  # the full local gradients at the current W, when this call's commit computed them
        if k == 1:
            if layer > 0:
                gradients = self._commit(state, lost, layer - 1)
            state["z"] = state["w"]
            state["out"] = self.rule.taps(layer)[0] * state["w"] if layer > 0 else state["w"]
            state["active"] = ~inactive if inactive is not None and layer > 0 else torch.ones(own, num_tasks,
                                                                                                 dtype=torch.bool)
        z = state["z"]
        agents, rows, flags = inbox
        where = self.positions(agents)
        received = torch.zeros(len(self.outside), *z.shape[1:])
        present = torch.zeros(len(self.outside), num_tasks, dtype=torch.bool)
        received[where], present[where] = rows, flags
        ok = torch.cat([state["active"], present])
        sent = MessageBuffer(self.spec.async_mode, store=state).transmitter(ok)(k, torch.cat([z, received]))
        z = aggregate(self.rows, sent)  # one hop: the agents' rows of S times what they heard
        if layer > 0:
            state["out"] = state["out"] + self.rule.taps(layer)[k] * z  # eq. 12, accumulated hop by hop
        if k < self.rule.hops:
            state["z"] = z
            return self.pack(z, quiet)
        del state["z"]  # z and the filter sum live within a step: the Context travels with every call, keep it small
        if layer == 0:  # priming: channel k+1 carried z_k; after the last hop, channel 1 carries W_0 again
            del state["out"]
            return self.pack(state["w"], quiet)
        new, features = self._step(state, layer, gradients)
        del state["out"]
        state.update({PENDING + name: value for name, value in features.items()})
        state["w_new"] = torch.where(state["active"].view(*state["active"].shape, 1, 1), new, state["w"])
        state["pending"] = torch.tensor(layer)
        return self.pack(state["w_new"], quiet)

    def _step(self, state: dict[str, torch.Tensor], layer: int, gradients: list[torch.Tensor] | None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``W_l = H(W_{l-1}) - update`` (eq. 11 / eq. 10) for every task, on the node's own rows, and the new state
        of the step features."""
        w, delta, filtered = state["w"], state["delta"], state["out"]
        names = [key[len(FEATURE):] for key in state if key.startswith(FEATURE)]
        new, features = [], []
        for t, (task, (x, y, _, _)) in enumerate(zip(self.tasks, self.data, strict=True)):
            idx = batch_indices(task, self.seed, layer, self.rule.batch_size) if self.rule.uses_batches else None
            gradient = gradients[t] if gradients is not None else None  # recorded at this W in this call (K = 1)
            update, task_features = self.rule.update(layer, w[:, t], delta[:, t], filtered[:, t], x, y, idx,
                                                     {name: state[FEATURE + name][:, t] for name in names}, gradient)
            new.append(filtered[:, t] - update)
            features.append(task_features)
        return torch.stack(new, dim=1), {name: torch.stack([f[name] for f in features], dim=1) for name in names}

    def finish(self, state: dict[str, torch.Tensor], lost: set[int]) -> dict[str, torch.Tensor]:
        """Commit the last step and hand over the per-layer metrics (and history when asked)."""
        self._commit(state, lost, self.num_layers)
        keys = ("accuracy", "loss", "grad2", "history") if self.spec.keep_history else ("accuracy", "loss", "grad2")
        return {key: state[key] for key in keys}

    def pack(self, values: torch.Tensor, quiet: torch.Tensor | None) -> Outbox:
        """One block per destination node: the rows of the own agents it hears from, except agents that sit the
        consuming round out in every task (``quiet`` (agents, T); None = everyone sends); one gather for all."""
        rows, route = self.route_rows, self.route_of
        if quiet is not None:
            sending = ~quiet.all(dim=1)[rows]
            rows, route = rows[sending], route[sending]
        counts = torch.bincount(route, minlength=len(self.route_order))
        nonempty = counts > 0
        return Outbox(self.route_order[nonempty].tolist(), counts[nonempty].tolist(), self.agents[rows], values[rows])
