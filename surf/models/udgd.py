"""U-DGD: decentralized gradient descent unrolled into L learnable layers (paper eq. 11-13).

Layer l:  ``W_l = sum_{k=0..K} h_{k,l} S^k W_{l-1}  -  step_l(W_{l-1}, B_l)``      (eq. 11-12)

The graph filter is ``surf.graphs.filter.GraphFilter`` (K communication rounds); ``step_l`` is the local learned
update every agent applies with its own data (``surf.models.steps``: the paper's raw-batch layer or the compact,
label-blind one, with optional extra features ``surf.models.features``). Star / server mode (eq. 13): node 0 holds no
data, has no k=0 term and no local step.

The model remembers its *classical start* ``(alpha, beta)`` (a buffer saved with it): ``model.step_init`` /
``model.momentum_init``, or the tuned heavy-ball DGD it was warm-started from
(:meth:`UnrolledDGD.start_from_heavy_ball`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from surf.config import ModelConfig
from surf.data.batches import batch_indices, gather_batch, initial_weights
from surf.graphs.network import Network, NetworkStep, Schedule
from surf.models.features import extra_vectors, initial_state, layer_features
from surf.models.safeguard import loss_guard
from surf.models.steps import CompactStep, PaperStep
from surf.problems.softmax import agent_gradients
from surf.utils.memory import release_after_gradient, release_freed_memory
from surf.utils.replicas import check_fits, replicas

if TYPE_CHECKING:
    from surf.data.tasks import Task

SERVER = 0  # index of the server in star mode
# The compact local step runs on chunks of agents whose MLP hidden layer (agents x (d+1) C x hidden floats) is at most
# this size (16 MiB), so that at 10,000+ agents each chunk's work stays near the cache instead of streaming GBs
# through memory. 2^22 measured 13 % faster per meta-step than 2^20 at 10,000 agents, 3-4 % at 1,000 and paper size,
# 2^24 slower (BENCHMARKS.md); the quickstart (100 agents, 1.04 M floats) is one chunk either way.
CHUNK_FLOATS = 2**22
STACK_FLOATS = 2**24  # most floats of W_0..W_L stacked at once for per-layer measures (Trajectory.per_layer)


@dataclass
class Trajectory:
    """Everything a forward pass produced: W_0..W_L and the mini-batch indices each layer consumed."""

    weights: list[torch.Tensor]  # L+1 tensors (N, d+1, C); index 0 = W_0
    batches: list[torch.Tensor] = field(default_factory=list)  # L tensors (N, B) of indices into x_train
    active: list[torch.Tensor | None] = field(default_factory=list)  # L masks (N,) of agents that took part
    # the agents' full local gradients at W_0..W_{L-1} when the local steps used them (local_gradient=full):
    # the descent constraint measures the same gradients and reuses them instead of recomputing
    full_gradients: list[torch.Tensor] = field(default_factory=list)
    # with the run-time safeguard: L masks (N,) of the agents that took the classical step (surf.models.safeguard)
    fallbacks: list[torch.Tensor] = field(default_factory=list)

    def per_layer(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` of the stacked W_0..W_L (L+1, N, d+1, C) -> (L+1, ...): one batched call on the whole stack, or
        on groups of layers of at most STACK_FLOATS floats each (a stack of 10,000+ agents' models would be GBs)."""
        per_group = max(1, STACK_FLOATS // self.weights[0].numel())
        if per_group >= len(self.weights):
            return fn(torch.stack(self.weights))
        return torch.cat([fn(torch.stack(self.weights[i:i + per_group]))
                          for i in range(0, len(self.weights), per_group)])


class UnrolledDGD(nn.Module):
    """The unrolled optimizer: L layers of (graph filter, local step), parameters separate per layer."""

    def __init__(self, cfg: ModelConfig, num_features: int, num_classes: int, batch_size: int) -> None:
        super().__init__()
        self.cfg, self.batch_size = cfg, batch_size
        layers, taps = cfg.layers, cfg.hops + 1
        check_fits(4 * layers * taps, "the graph filters' taps")  # h_{k,l}: past 64 bits torch.zeros overflows
        if cfg.variant == "paper":
            self.taps = nn.Parameter(0.1 * torch.rand(layers, taps))  # authors' U(0, 0.1)
            self.steps = nn.ModuleList(replicas(lambda: PaperStep(num_features, num_classes, batch_size, cfg), layers))
        else:
            init = torch.zeros(layers, taps)
            init[:, min(1, taps - 1)] = 1.0  # start at plain S mixing (identity mixing when K = 0)
            self.taps = nn.Parameter(init)
            self.steps = nn.ModuleList(replicas(lambda: CompactStep(cfg), layers))
        self.register_buffer("classical_start", torch.tensor([float(cfg.step_init), float(cfg.momentum_init)]))

    @torch.no_grad()
    def start_from_heavy_ball(self, step: float, momentum: float) -> None:
        """Make every layer heavy-ball DGD with K consensus rounds per gradient step (the MLP output zero):

            W_l = S^K W_{l-1} - step g(W_{l-1}) + momentum (W_{l-1} - W_{l-2})          (eq. 10 with S^K)

        i.e. taps ``h_K = 1``, every other tap 0. With K = 1 this is heavy-ball DGD itself, round for round.
        """
        if not all(isinstance(s, CompactStep) for s in self.steps):
            raise ValueError("a heavy-ball start needs the compact model (model.variant=compact)")
        self.taps.zero_()
        self.taps[:, -1] = 1.0
        for layer in self.steps:
            layer.step.fill_(step)
            layer.momentum.fill_(momentum)
            nn.init.zeros_(layer.mlp[2].weight)
            nn.init.zeros_(layer.mlp[2].bias)
        self.classical_start.copy_(torch.tensor([step, momentum]))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        """Checkpoints written before the classical start was saved: keep the one from the config."""
        state_dict.setdefault(prefix + "classical_start", self.classical_start.clone())
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def rounds(self) -> int:
        """Communication rounds of one forward pass: K per layer."""
        return self.cfg.layers * self.cfg.hops

    @property
    def uses_batches(self) -> bool:
        """Whether a local step reads its layer's mini-batch (the paper variant, or a mini-batch local gradient)."""
        return self.cfg.variant == "paper" or self.cfg.local_gradient != "full"

    @property
    def vectors_per_message(self) -> int:
        """Model-shaped vectors in every message: the model plus one per communicated feature."""
        return 1 + extra_vectors(self.cfg.features)

    def forward(
        self,
        task: Task,
        shift: torch.Tensor,
        seed: int,
        schedule: Schedule | None = None,
        async_mode: str = "stale",
        safeguard: bool | None = None,
    ) -> Trajectory:
        """Run all layers on ``task``; ``schedule(l)`` gives the network at layer l (dropped agents, graph, ...).
        ``safeguard``: apply the run-time safeguard (None = as ``model.safeguard`` says; meta-training passes False)."""
        w = initial_weights(task, seed, self.cfg.w0_std)
        trajectory = Trajectory(weights=[w])
        network = Network(shift, schedule, async_mode)
        server = self._server_mask(task)
        delta, state = torch.zeros_like(w), initial_state(self.cfg.features, w)
        for layer in range(self.cfg.layers):
            idx = batch_indices(task, seed, layer + 1, self.batch_size)
            trajectory.batches.append(idx)
            step = network.step(layer + 1)
            trajectory.active.append(step.active)
            proposed, gradient, fallback, new_state = self._layer(layer, w, delta, state, task, idx, step, server,
                                                                  safeguard)
            if gradient is not None:
                trajectory.full_gradients.append(gradient)
            if fallback is not None:
                trajectory.fallbacks.append(fallback if step.active is None else fallback & step.active)
            new = step.keep(proposed, w)
            delta, w = step.keep(new - w, delta), new  # a dropped agent keeps its whole state: W and delta
            state = {name: step.keep(value, state[name]) for name, value in new_state.items()}  # dropped: frozen
            trajectory.weights.append(w)
            if self.cfg.recompute:  # memory mode: the layer's freed temporaries go back to the OS
                release_freed_memory()
                release_after_gradient(w)
        return trajectory

    def _layer(
        self,
        layer: int,
        w: torch.Tensor,
        delta: torch.Tensor,
        state: dict[str, torch.Tensor],
        task: Task,
        idx: torch.Tensor,
        network: NetworkStep,
        server: torch.Tensor | None,
        safeguard: bool | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor]]:
        taps = self.taps[layer]
        if server is not None:  # eq. 13: the server has no k=0 term
            no_self = torch.ones(taps.shape[0], w.shape[0], device=w.device)
            no_self[0] = (~server).to(no_self.dtype)
            taps = taps.unsqueeze(1) * no_self
        filtered = network.filter(w, taps, self.cfg.recompute)  # eq. 12, K rounds
        extra, grad, state = self.step_features(layer, w, state, task.x_train, task.y_train, idx, network)
        update, gradient, fallback = self.local_step(layer, w, delta, filtered, task.x_train, task.y_train, idx,
                                                     extra, grad, safeguard)
        if server is not None:  # eq. 13: the server applies no local step
            update = update * (~server).view(-1, 1, 1)
        return filtered - update, gradient, fallback, state  # eq. 11

    def step_features(self, layer: int, w: torch.Tensor, state: dict[str, torch.Tensor], x_train: torch.Tensor,
                      y_train: torch.Tensor, idx: torch.Tensor | None, network: NetworkStep | None = None,
                      gradient: torch.Tensor | None = None
                      ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None, dict[str, torch.Tensor]]:
        """Layer ``layer``'s extra features (``model.features``), the gradient they came from and the features' new
        state; ``((), None, state)`` without features. The gradient comes first: the features send it (or what it
        updates) with the model. ``network`` is needed only by the features that communicate; ``gradient``, the
        agents' local gradient on the step's data when the caller already has it."""
        if not self.cfg.features:
            return (), None, state
        grad = agent_gradients(w, *self._local_data(x_train, y_train, idx)) if gradient is None else gradient
        extra, state = layer_features(self.cfg.features, state, grad, network, self.cfg.hops, layer + 1)
        return extra, grad, state

    def local_step(
        self,
        layer: int,
        w: torch.Tensor,
        delta: torch.Tensor,
        filtered: torch.Tensor,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        idx: torch.Tensor | None,
        extra: tuple[torch.Tensor, ...] = (),
        grad: torch.Tensor | None = None,
        safeguard: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The learned update ``step_l`` of layer ``layer`` (0-based) for any set of agents' rows (eq. 11), the
        agents' full local gradient at ``w`` when the step used it (None otherwise) and, with the run-time safeguard
        (``safeguard``, None = ``model.safeguard``), the mask of agents that took the classical step instead.

        Everything here is agent-local: the agents' own models ``w`` and previous updates ``delta``, their filter
        outputs ``filtered`` (for the consensus gap), their own data and mini-batch indices ``idx`` (rows, B; may be
        None unless :attr:`uses_batches`), and the layer's ``extra`` features with the gradient ``grad`` they were
        computed from (``model.features``).
        The vectorized engine calls it on all N rows at once, a Flower node on the rows of its own agents.
        """
        step = self.steps[layer]
        if isinstance(step, PaperStep):
            return step(w, *gather_batch(x_train, y_train, idx)), None, None
        data = self._local_data(x_train, y_train, idx)
        precomputed = () if grad is None else (grad, *extra)  # features needed the gradient before the filter
        agents = max(1, CHUNK_FLOATS // (w[0].numel() * self.cfg.hidden))  # per chunk: its hidden layer in cache
        chunks = zip(*(torch.split(t, agents) for t in (w, delta, filtered, *data, *precomputed)), strict=True)
        if self.cfg.recompute and torch.is_grad_enabled():  # keep only the inputs; rebuild the step in backward
            results = [checkpoint(_compact_update, step, *chunk, use_reentrant=False) for chunk in chunks]
        else:
            results = [_compact_update(step, *chunk) for chunk in chunks]
        if len(results) == 1:
            update, grad = results[0]
        else:
            update, grad = (torch.cat(parts) for parts in zip(*results, strict=True))
        fallback, guarded = None, self.cfg.safeguard == "loss" if safeguard is None else safeguard
        if guarded:
            alpha, beta = self.classical_start
            update, fallback = loss_guard(update, alpha * grad - beta * delta, filtered, *data)
        return update, grad if self.cfg.local_gradient == "full" else None, fallback

    def _local_data(self, x_train: torch.Tensor, y_train: torch.Tensor, idx: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the compact step's gradient is computed on: the agent's whole training set or its mini-batch."""
        return (x_train, y_train) if self.cfg.local_gradient == "full" else gather_batch(x_train, y_train, idx)

    def _server_mask(self, task: Task) -> torch.Tensor | None:
        if not self.cfg.server:
            return None
        rows = torch.arange(task.num_agents, device=task.x_train.device)
        return rows % (task.num_agents // task.num_tasks) == SERVER  # the server of every task side by side


def _compact_update(step: CompactStep, w: torch.Tensor, delta: torch.Tensor, filtered: torch.Tensor,
                    x: torch.Tensor, y: torch.Tensor, *precomputed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The compact step's update from the agents' gradient on (x, y), and that gradient; ``precomputed`` = (the
    gradient, the extra features) when the step's features needed the gradient first."""
    grad, extra = (precomputed[0], precomputed[1:]) if precomputed else (agent_gradients(w, x, y), ())
    return step(w, grad, delta, filtered - w, extra), grad
