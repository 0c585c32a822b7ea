"""U-DGD: decentralized gradient descent unrolled into L learnable layers (paper eq. 11-13).

Layer l:  ``W_l = sum_{k=0..K} h_{k,l} S^k W_{l-1}  -  step_l(W_{l-1}, B_l)``      (eq. 11-12)

``step_l`` is the local learned update every agent applies to its own fresh mini-batch ``B_l``:

* ``paper``  : ``sigma(M_l [w_i || b_i] + d_l)`` on the raw vectorized batch (features then one-hot label per sample),
  a single fully connected layer of size (p + B(d+C)) x p, optionally with the authors' parameter-free BatchNorm
  across agents and Dropout.  It sees labels as inputs, so it can memorize one classifier.
* ``compact``: label-blind and permutation-equivariant: ``alpha_l g - beta_l delta - rms(g) * MLP_l(features)``
  where g is the agent's local stochastic gradient on B_l, delta its previous update, and the tiny MLP acts on every
  coordinate of W_i with shared weights (features: normalized g, delta, consensus gap H(W)-W, and w).  Its size does
  not depend on d, C, batch size or N; untrained (MLP output zero) it is DGD with heavy-ball momentum beta_l.

Star / server mode (eq. 13): node 0 holds no data, has no k=0 term and no local step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from surf.config import ModelConfig
from surf.network import Network, NetworkStep, Schedule
from surf.problems.softmax import agent_gradients
from surf.seeding import torch_generator

if TYPE_CHECKING:
    from surf.data.tasks import Task

SERVER = 0  # index of the server in star mode


@dataclass
class Trajectory:
    """Everything a forward pass produced: W_0..W_L and the mini-batch indices each layer consumed."""

    weights: list[torch.Tensor]  # L+1 tensors (N, d+1, C); index 0 = W_0
    batches: list[torch.Tensor] = field(default_factory=list)  # L tensors (N, B) of indices into x_train
    active: list[torch.Tensor | None] = field(default_factory=list)  # L masks (N,) of agents that took part


def initial_weights(task: Task, seed: int, std: float) -> torch.Tensor:
    """Random W_0 ~ N(0, std^2), keyed by the task (the same for a task and its relabelled twin)."""
    gen = torch_generator(seed, "w0", *task.key)
    shape = (task.num_agents, task.num_features, task.num_classes)
    return (std * torch.randn(shape, generator=gen)).to(task.x_train.device)


def batch_indices(task: Task, seed: int, layer: int, batch_size: int) -> torch.Tensor:
    """Fresh i.i.d. mini-batch indices (with replacement) for every agent at ``layer`` -> (N, B), keyed."""
    gen = torch_generator(seed, "batch", *task.key, layer)
    idx = torch.randint(0, task.x_train.shape[1], (task.num_agents, batch_size), generator=gen)
    return idx.to(task.x_train.device)


def gather_batch(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent samples ``x[i, idx[i]]``: (N, m, d+1), (N, m), (N, ..., B) -> (N, ..., B, d+1), (N, ..., B)."""
    rows = torch.arange(x.shape[0], device=x.device).view(-1, *([1] * (idx.dim() - 1)))
    return x[rows, idx], y[rows, idx]


def rms(v: torch.Tensor) -> torch.Tensor:
    """Per-agent root-mean-square over an agent's coordinates, shaped (N, 1, 1) for broadcasting."""
    return v.pow(2).mean(dim=(-2, -1), keepdim=True).add(1e-12).sqrt()


class PaperStep(nn.Module):
    """``sigma(M [w || b] + d)`` (eq. 11) with the authors' U(0, 0.1) initialization."""

    def __init__(self, num_features: int, num_classes: int, batch_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_classes = num_classes
        params = num_features * num_classes
        batch_width = batch_size * (num_features - 1 + num_classes)
        self.linear = nn.Linear(params + batch_width, params)
        nn.init.uniform_(self.linear.weight, 0.0, 0.1)
        nn.init.uniform_(self.linear.bias, 0.0, 0.1)
        self.batchnorm, self.dropout = cfg.batchnorm, cfg.dropout

    def forward(self, w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        samples = torch.cat([xb[..., :-1], F.one_hot(yb, self.num_classes).to(xb.dtype)], dim=-1)
        z = self.linear(torch.cat([w.reshape(n, -1), samples.reshape(n, -1)], dim=1))
        if self.batchnorm:  # authors' code: fresh BatchNorm over the agent dimension, always batch statistics
            z = F.batch_norm(z, None, None, training=True)
        z = F.dropout(z, self.dropout, self.training)
        return torch.relu(z).reshape(w.shape)


class CompactStep(nn.Module):
    """Label-blind local step: ``alpha g - beta delta - rms(g) * MLP(g~, delta~, gap~, w~)`` per coordinate."""

    num_inputs = 4

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.step = nn.Parameter(torch.tensor(float(cfg.step_init)))
        self.momentum = nn.Parameter(torch.tensor(0.0))
        self.mlp = nn.Sequential(nn.Linear(self.num_inputs, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)  # untrained model = DGD with learned step (prototype finding)
        nn.init.zeros_(self.mlp[2].bias)
        self.recompute = cfg.recompute

    def forward(self, w: torch.Tensor, grad: torch.Tensor, delta: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            correction = checkpoint(self._correction, w, grad, delta, gap, use_reentrant=False)
        else:
            correction = self._correction(w, grad, delta, gap)
        return self.step * grad - self.momentum * delta - correction

    def _correction(self, w: torch.Tensor, grad: torch.Tensor, delta: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        """``rms(g) * MLP(g/rms(g), delta/rms(delta), gap/rms(gap), w/rms(w))`` coordinate-wise."""
        scale = rms(grad)
        features = torch.stack([grad / scale, delta / rms(delta), gap / rms(gap), w / rms(w)], dim=-1)
        return self.mlp(features).squeeze(-1) * scale


class UnrolledDGD(nn.Module):
    """The unrolled optimizer: L layers of (graph filter, local step), parameters separate per layer."""

    def __init__(self, cfg: ModelConfig, num_features: int, num_classes: int, batch_size: int) -> None:
        super().__init__()
        self.cfg, self.batch_size = cfg, batch_size
        layers, taps = cfg.layers, cfg.hops + 1
        if cfg.variant == "paper":
            self.taps = nn.Parameter(0.1 * torch.rand(layers, taps))  # authors' U(0, 0.1)
            self.steps = nn.ModuleList(
                PaperStep(num_features, num_classes, batch_size, cfg) for _ in range(layers)
            )
        else:
            init = torch.zeros(layers, taps)
            init[:, min(1, taps - 1)] = 1.0  # start at plain S mixing (identity mixing when K = 0)
            self.taps = nn.Parameter(init)
            self.steps = nn.ModuleList(CompactStep(cfg) for _ in range(layers))

    @property
    def rounds(self) -> int:
        """Communication rounds of one forward pass: K per layer."""
        return self.cfg.layers * self.cfg.hops

    def forward(
        self,
        task: Task,
        shift: torch.Tensor,
        seed: int,
        schedule: Schedule | None = None,
        async_mode: str = "stale",
    ) -> Trajectory:
        """Run all layers on ``task``; ``schedule(l)`` gives the network at layer l (dropped agents, graph, ...)."""
        w = initial_weights(task, seed, self.cfg.w0_std)
        trajectory = Trajectory(weights=[w])
        network = Network(shift, schedule, async_mode)
        server = self._server_mask(task)
        delta = torch.zeros_like(w)
        for layer in range(self.cfg.layers):
            idx = batch_indices(task, seed, layer + 1, self.batch_size)
            trajectory.batches.append(idx)
            step = network.step(layer + 1)
            trajectory.active.append(step.active)
            new = step.keep(self._layer(layer, w, delta, task, idx, step, server), w)
            delta, w = new - w, new
            trajectory.weights.append(w)
        return trajectory

    def _layer(
        self,
        layer: int,
        w: torch.Tensor,
        delta: torch.Tensor,
        task: Task,
        idx: torch.Tensor,
        network: NetworkStep,
        server: torch.Tensor | None,
    ) -> torch.Tensor:
        taps = self.taps[layer]
        if server is not None:  # eq. 13: the server has no k=0 term
            no_self = torch.ones(taps.shape[0], w.shape[0], device=w.device)
            no_self[0, SERVER] = 0.0
            taps = taps.unsqueeze(1) * no_self
        filtered = network.filter(w, taps)  # eq. 12, K rounds
        update = self.local_step(layer, w, delta, filtered, task.x_train, task.y_train, idx)
        if server is not None:  # eq. 13: the server applies no local step
            update = update * (~server).view(-1, 1, 1)
        return filtered - update  # eq. 11

    def local_step(
        self,
        layer: int,
        w: torch.Tensor,
        delta: torch.Tensor,
        filtered: torch.Tensor,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        idx: torch.Tensor,
    ) -> torch.Tensor:
        """The learned update ``step_l`` of layer ``layer`` (0-based) for any set of agents' rows (eq. 11).

        Everything here is agent-local: the agents' own models ``w`` and previous updates ``delta``, their filter
        outputs ``filtered`` (for the consensus gap), their own data and mini-batch indices ``idx`` (rows, B).
        The vectorized engine calls it on all N rows at once, a Flower node on the rows of its own agents.
        """
        xb, yb = gather_batch(x_train, y_train, idx)
        step = self.steps[layer]
        if isinstance(step, PaperStep):
            return step(w, xb, yb)
        full = self.cfg.local_gradient == "full"
        grad = agent_gradients(w, x_train, y_train) if full else agent_gradients(w, xb, yb)
        return step(w, grad, delta, filtered - w)

    def _server_mask(self, task: Task) -> torch.Tensor | None:
        if not self.cfg.server:
            return None
        mask = torch.zeros(task.num_agents, dtype=torch.bool, device=task.x_train.device)
        mask[SERVER] = True
        return mask
