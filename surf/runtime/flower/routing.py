"""Who sits where and who hears whom: the shards of agents, the columns of S each node hears from and the rows each
node sends to each other node (one block of rows per destination node and round)."""

from __future__ import annotations

import torch

from surf.data.shares import as_csr, heard_columns, shift_rows


class Routing:
    """Shards of agents on a graph ``shift`` (dense or sparse (N, N)): ``columns[s]`` are the agents node s hears
    from (its own first), ``routes[s][d]`` the agents of node s that node d hears from (sorted), ``node_of[i]``
    agent i's node."""

    def __init__(self, shift: torch.Tensor, shards: list[list[int]]) -> None:
        self.shards, self.csr = shards, as_csr(shift)
        self.node_of = torch.empty(shift.shape[0], dtype=torch.int64)
        for s, agents in enumerate(shards):
            self.node_of[agents] = s
        self.columns = [heard_columns(self.csr, agents) for agents in shards]
        self.routes: list[dict[int, list[int]]] = [{} for _ in shards]
        for d, (agents, columns) in enumerate(zip(shards, self.columns, strict=True)):
            for j in columns[len(agents):]:
                self.routes[int(self.node_of[j])].setdefault(d, []).append(j)

    def __len__(self) -> int:
        return len(self.shards)

    def rows(self, s: int) -> torch.Tensor:
        """Node s's rows of S over the columns it hears from, dense."""
        return shift_rows(self.csr, self.shards[s], self.columns[s])
