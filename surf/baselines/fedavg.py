"""Server-client baselines on the star graph (server = node 0, clients 1..N-1): FedAvg, FedProx, SCAFFOLD.

Round r: a keyed random subset P_r of ``clients_per_round`` clients (the paper: 10 of 100) that are active and
linked to the server this round starts from the global model x, runs E local SGD steps and uploads; the server
aggregates and broadcasts the new x to every client, so every client's model (the one evaluated) is the global one.

    FedAvg  (McMahan et al. 2017):     y <- y - eta g_i(y)                                  x <- mean_{i in P} y_i
    FedProx (Li et al., MLSys 2020):   y <- y - eta [g_i(y) + mu (y - x)]                   x <- mean_{i in P} y_i
    SCAFFOLD (Karimireddy et al., ICML 2020, Alg. 1, option II, global step 1):
        y <- y - eta [g_i(y) - c_i + c]
        c_i+ = c_i - c + (x - y_E) / (E eta)
        x <- x + mean_{i in P} (y_i - x),          c <- c + (1 / n_clients) sum_{i in P} (c_i+ - c_i)

Messages go client -> server -> clients through the :class:`~surf.network.Network` as two one-hop aggregations on
the star's links (upload: row 0 averages the participants; broadcast: every row takes row 0), so dropped agents and
stale buffers apply as for every other method. SCAFFOLD sends two vectors each way (model and control variate).
"""

from __future__ import annotations

import torch

from surf.baselines.common import Problem, State, hyper, mix, sparse_operator
from surf.graphs.network import NetworkStep
from surf.utils.seeding import torch_generator


def participants(step: NetworkStep, seed: int, key: tuple, r: int, count: int) -> torch.Tensor:
    """(N,) bool: the keyed draw of ``count`` clients for round r, minus clients dropped or cut off this round."""
    n = step.shift.shape[0]
    chosen = torch.zeros(n, dtype=torch.bool)
    order = torch.randperm(n - 1, generator=torch_generator(seed, "participants", *key, r)) + 1
    chosen[order[:count]] = True
    chosen = chosen.to(step.shift.device) & _server_links(step.shift)
    if step.active is not None:
        chosen &= step.active.to(chosen.device)
    return chosen


def _server_links(shift: torch.Tensor) -> torch.Tensor:
    """(N,) bool: clients with a working link to the server (node 0) in this step's S."""
    coo = (shift.to_sparse_coo() if shift.layout != torch.strided else shift.to_sparse()).coalesce()
    rows, cols = coo.indices()
    up = torch.zeros(shift.shape[0], dtype=torch.bool, device=shift.device)
    up[cols[(rows == 0) & (cols != 0)]] = True
    return up


def upload(step: NetworkStep, z: torch.Tensor, chosen: torch.Tensor, weight: float | None, channel: str
           ) -> torch.Tensor:
    """The server's row becomes ``weight * sum_{i in P} z_i`` (``weight=None``: the mean over P; zero if P is
    empty); every other row is unchanged. z is gridded (G, N, ...)."""
    n, members = chosen.shape[0], chosen.nonzero().flatten().cpu()
    clients = torch.arange(1, n)
    scale = 1.0 / max(members.numel(), 1) if weight is None else weight
    rows = torch.cat([torch.zeros_like(members), clients])
    cols = torch.cat([members, clients])
    values = torch.cat([torch.full((members.numel(),), scale), torch.ones(n - 1)])
    operator = sparse_operator(rows, cols, values, n, z)
    return mix(NetworkStep(step.network, operator, step.active), z, channel)


def broadcast(step: NetworkStep, z: torch.Tensor, channel: str) -> torch.Tensor:
    """Every agent receives the server's row (one message per client)."""
    n = z.shape[1]
    operator = sparse_operator(torch.arange(n), torch.zeros(n, dtype=torch.long), torch.ones(n), n, z)
    return mix(NetworkStep(step.network, operator, step.active), z, channel)


class FedAvg:
    """FedAvg (``prox=None``) or FedProx (grid column ``prox`` = mu); grid column ``step`` (eta)."""

    communicates = True

    def __init__(self, problem: Problem, step: torch.Tensor, local_steps: int, clients_per_round: int,
                 prox: torch.Tensor | None = None) -> None:
        self.problem, self.step, self.local_steps, self.count, self.prox = (
            problem, step, local_steps, clients_per_round, prox)

    def init(self, w: torch.Tensor) -> State:
        return {"w": w[:, :1].expand_as(w).clone()}  # the server's W_0 is the global model everyone starts from

    def local(self, x: torch.Tensor, r: int, correction: torch.Tensor | None = None) -> torch.Tensor:
        """E local steps from the global model x (every agent's row); ``correction`` = SCAFFOLD's c - c_i."""
        y, eta = x, hyper(self.step, x)
        for s in range(self.local_steps):
            grad = self.problem.gradient(y, r, s)
            if self.prox is not None:
                grad = grad + hyper(self.prox, x) * (y - x)
            if correction is not None:
                grad = grad + correction
            y = y - eta * grad
        return y

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        chosen = participants(step, self.problem.seed, self.problem.task.key, r, self.count)
        x = state["w"]
        delta = self.local(x, r) - x
        server = x + upload(step, delta, chosen, None, "w")  # row 0: x + mean_P (y_i - x)
        return {"w": broadcast(step, server, "x")}


class Scaffold(FedAvg):
    """SCAFFOLD: FedAvg's round with control variates (server c in row 0, client c_i in rows 1..N-1)."""

    def init(self, w: torch.Tensor) -> State:
        state = super().init(w)
        zero = torch.zeros_like(w)
        return {**state, "c": zero, "c_server": zero.clone()}  # c_server: each client's copy of the server's c

    def round(self, state: State, step: NetworkStep, r: int) -> State:
        chosen = participants(step, self.problem.seed, self.problem.task.key, r, self.count)
        x, c, c_server = state["w"], state["c"], state["c_server"]
        y = self.local(x, r, correction=c_server - c)
        is_client = torch.arange(x.shape[1], device=x.device) > 0
        c_new = c - c_server + (x - y) / (self.local_steps * hyper(self.step, x))
        keep = (chosen & is_client).view(1, -1, 1, 1)
        c_clients = torch.where(keep, c_new, c)
        n_clients = x.shape[1] - 1
        server_x = x + upload(step, y - x, chosen, None, "w")
        server_c = c + upload(step, c_clients - c, chosen, 1.0 / n_clients, "c")
        c_all = torch.where(is_client.view(1, -1, 1, 1), c_clients, server_c)
        return {"w": broadcast(step, server_x, "x"), "c": c_all, "c_server": broadcast(step, server_c, "c_down")}

