"""What every baseline shares: the local problem (gradients, keyed mini-batches, metrics), the round loop, and the
mixing matrices some methods require.

A baseline is a :class:`RoundMethod`: ``init(W_0) -> state`` and ``round(state, step, r) -> state``, every state
tensor shaped (G, N, d+1, C) for a grid of G hyper-parameter settings run at once (hyper-parameters are (G, 1, 1, 1)
tensors). :func:`run_rounds` owns the loop: it asks the :class:`~surf.network.Network` for round r, lets the method
communicate only through that step, freezes dropped agents' whole state (``step.keep``) and records held-out accuracy
and loss after every round, so a scenario (dropped agents, failed links, time-varying graphs) reaches every method
identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from surf.data.batches import batch_indices, gather_batch
from surf.data.tasks import Task
from surf.graphs.network import Network, NetworkStep, Schedule
from surf.problems.softmax import agent_gradients, agent_metrics
from surf.utils.errors import ConfigError

State = dict[str, torch.Tensor]


@dataclass
class Curves:
    """Held-out accuracy and loss per round, shape (G, rounds + 1) (round 0 = W_0) — or (G, 1), the last round
    only, when the curve was not asked for — and the final iterates."""

    accuracy: torch.Tensor
    loss: torch.Tensor
    final: torch.Tensor  # (G, N, d+1, C): every agent's model after the last round


@dataclass
class Problem:
    """The agents' local objectives ``f_i(W) = mean CE(X_i W, y_i) + (l2/2)||W||^2`` on one task.

    ``batch=None``: the full local gradient; ``batch=B``: a fresh keyed mini-batch of B samples per agent. Round r,
    local step 0 draws exactly SURF's layer-r batch (``batch_indices(task, seed, r, B)``); local step s > 0 draws
    ``batch_indices(task, seed, r, B, s)``. Agents outside ``agents`` (the star graph's server) hold no data.
    """

    task: Task
    seed: int = 0
    agents: torch.Tensor | None = None
    batch: int | None = None
    l2: float = 0.0

    def __post_init__(self) -> None:
        n = self.task.x_train.shape[0]
        self.has_data = torch.ones(n, 1, 1, device=self.task.x_train.device, dtype=self.task.x_train.dtype)
        if self.agents is not None:
            self.has_data = torch.zeros_like(self.has_data).index_fill_(0, self.agents, 1.0)

    def gradient(self, w: torch.Tensor, r: int, s: int = 0) -> torch.Tensor:
        """``grad f_i(W_i)`` for every agent (zero for data-less agents) at round r, local step s."""
        x, y = self.task.x_train, self.task.y_train
        if self.batch is not None:
            x, y = gather_batch(x, y, self._indices(r, s))
        grad = agent_gradients(w, x, y)
        if self.l2 > 0:
            grad = grad + self.l2 * w
        return grad * self.has_data

    def _indices(self, r: int, s: int) -> torch.Tensor:
        return batch_indices(self.task, self.seed, r, self.batch, *((s,) if s else ()))

    def metrics(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean held-out accuracy and loss over data agents, each (G,); a diverged loss counts as inf."""
        values = agent_metrics(w, self.task.x_test, self.task.y_test)  # (G, N) each, one product of logits
        if self.agents is not None:
            values = tuple(v[:, self.agents] for v in values)
        accuracy, loss = (torch.nan_to_num(v, nan=float("inf")).mean(dim=1) for v in values)
        return accuracy, loss


class RoundMethod(Protocol):
    """One baseline with its hyper-parameters bound (each a (G, 1, 1, 1) tensor)."""

    communicates: bool  # False: no network at all (centralized training); schedules do not apply

    def init(self, w: torch.Tensor) -> State:
        """The state before round 1 from W_0 (G, N, d+1, C); ``state["w"]`` is what is evaluated."""

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        """Round r: every state tensor's proposed new value (the loop keeps dropped agents' old rows)."""


def run_rounds(method: RoundMethod, problem: Problem, w0: torch.Tensor, rounds: int, grid: int,
               schedule: Schedule | None = None, async_mode: str = "stale", shift: torch.Tensor | None = None,
               curve: bool = True) -> Curves:
    """Run ``method`` for ``rounds`` communication rounds from the same W_0 for all G grid settings; held-out
    metrics after every round (``curve``) or after the last one only (tuning and stress need no more)."""
    state = method.init(w0.unsqueeze(0).expand(grid, *w0.shape).clone())
    network = Network(shift, schedule, async_mode) if method.communicates else None
    metrics = [problem.metrics(state["w"])] if curve else []
    for r in range(1, rounds + 1):
        step = network.step(r) if network is not None else None
        new = method.round(state, step, r)
        state = {k: step.keep(v, state[k], agent_dim=1) if step is not None else v for k, v in new.items()}
        if curve or r == rounds:
            metrics.append(problem.metrics(state["w"]))
    accuracy, loss = (torch.stack([m[i] for m in metrics], dim=1) for i in (0, 1))
    return Curves(accuracy, loss, state["w"])


def hyper(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (G,) grid column as a (G, 1, 1, 1) tensor on ``like``'s device and dtype."""
    return values.to(like).view(-1, 1, 1, 1)


def mix(step: NetworkStep, z: torch.Tensor, channel: int | str = 1) -> torch.Tensor:
    """``S_t @ z`` for a gridded state z (G, N, ...): agents lead for the sparse matmul."""
    return step.aggregate(z.transpose(0, 1), channel).transpose(0, 1)


def _coo(shift: torch.Tensor) -> torch.Tensor:
    return (shift.to_sparse_coo() if shift.layout != torch.strided else shift.to_sparse()).coalesce()


def is_symmetric_doubly_stochastic(shift: torch.Tensor, tol: float = 1e-5) -> bool:
    """True when S = S^T, S >= 0 and every row sums to 1 (EXTRA's and DIGing's requirement on W)."""
    coo = _coo(shift)  # sparse throughout: a dense copy of 100,000 agents' S would take 40 GB
    asymmetry = (coo - coo.t()).coalesce().values()
    rows = torch.zeros(shift.shape[0], dtype=coo.dtype, device=coo.device).index_add_(0, coo.indices()[0],
                                                                                     coo.values())
    return bool((asymmetry.abs() <= tol).all() and (coo.values() >= -tol).all()
                and ((rows - 1).abs() <= tol).all())


def metropolis(shift: torch.Tensor) -> torch.Tensor:
    """Metropolis-Hastings weights on the links of S that work both ways (Xiao & Boyd 2004):
    ``W_ij = 1 / (1 + max(d_i, d_j))`` on links, ``W_ii = 1 - sum_j W_ij``; symmetric and doubly stochastic."""
    coo = _coo(shift)
    n = shift.shape[0]
    rows, cols = coo.indices()
    off = rows != cols
    links = torch.sparse_coo_tensor(torch.stack([rows[off], cols[off]]), torch.ones(int(off.sum())), (n, n),
                                    check_invariants=False)
    both = (links * links.t()).coalesce()  # a link counts only if both directions work
    (r, c), present = both.indices(), both.values() > 0
    r, c = r[present], c[present]
    degree = torch.bincount(r, minlength=n).double()
    weights = 1.0 / (1.0 + torch.maximum(degree[r], degree[c]))
    diagonal = 1.0 - torch.zeros(n, dtype=torch.float64).index_add_(0, r, weights)
    loops = torch.arange(n)
    return sparse_operator(torch.cat([r, loops]), torch.cat([c, loops]), torch.cat([weights, diagonal]), n, shift)


def sparse_operator(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int, like: torch.Tensor
                    ) -> torch.Tensor:
    """A sparse CSR (n, n) operator with the given entries, on ``like``'s device and dtype."""
    operator = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False)
    return operator.coalesce().to_sparse_csr().to(device=like.device, dtype=like.dtype)


class DoublyStochastic:
    """Mixing for methods that need a symmetric doubly-stochastic W (EXTRA, DIGing): each step's S itself when it
    already is one (e.g. ``topology.gso=metropolis``), otherwise the Metropolis weights of its links."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, step: NetworkStep) -> NetworkStep:
        key = id(step.shift)
        if key not in self._cache:  # the source tensor is held in the cache, so its id stays unique
            ok = is_symmetric_doubly_stochastic(step.shift)
            self._cache[key] = (step.shift, step.shift if ok else metropolis(step.shift))
        return NetworkStep(step.network, self._cache[key][1], step.active)


def require_star(shift: torch.Tensor, method: str) -> None:
    """Server-client methods run on the star graph with the server at node 0 (``topology.name=star``,
    ``model.server=true``); anything else is a ConfigError naming the fix."""
    rows, cols = _coo(shift).indices()
    off = rows != cols
    rows, cols = rows[off], cols[off]
    n = shift.shape[0]
    spokes = ((rows == 0) | (cols == 0)).all().item()
    complete = int(((rows == 0)).sum()) == n - 1 and int((cols == 0).sum()) == n - 1
    if not (spokes and complete):
        raise ConfigError(f"baseline '{method}' is a server-client method and needs the star graph with the server "
                          "at node 0: set topology.name=star and model.server=true (or drop it from eval.baselines)")
