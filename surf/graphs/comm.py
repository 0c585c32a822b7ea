"""Communication accounting: rounds, messages and bytes per round and in total, for every method.

A message is one agent sending its vectors to one neighbour over one directed link; a vector is one model-shaped
(d+1) x C matrix of float32. Per round, each leg of a method sends ``messages`` messages of ``vectors`` vectors:

    bytes per round = sum_legs messages x vectors x (d+1) C x 4

Gossip methods (DGD, heavy-ball, DSGD, DFedAvgM, EXTRA) send one vector over every directed edge of the graph per
round (E = number of off-diagonal nonzeros of S); DIGing sends two (x and the tracked gradient y). U-DGD uses K
rounds per layer, one vector per edge per hop, plus one per communicated step feature (gradient tracking, the
neighbour-averaged gradient). Server-client methods upload from the participating clients only
and broadcast to every client (SCAFFOLD: model and control variate each way). Centralized training communicates
nothing. The counts are the nominal ones: agents dropped by a scenario send less.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BYTES_PER_FLOAT = 4  # float32


@dataclass(frozen=True)
class Leg:
    """One kind of transmission in a round: how many messages, of how many vectors each."""

    messages: int
    vectors: int


@dataclass(frozen=True)
class CommCost:
    """A method's nominal communication for ``rounds`` rounds on a model of ``floats`` = (d+1) C numbers."""

    rounds: int
    legs: tuple[Leg, ...]
    floats: int

    @property
    def messages_per_round(self) -> int:
        return sum(leg.messages for leg in self.legs)

    @property
    def bytes_per_round(self) -> int:
        return sum(leg.messages * leg.vectors for leg in self.legs) * self.floats * BYTES_PER_FLOAT

    def as_dict(self) -> dict[str, int]:
        """The ``communication`` entry of summary.json."""
        return {
            "rounds": self.rounds,
            "messages": self.rounds * self.messages_per_round,
            "bytes": self.rounds * self.bytes_per_round,
            "messages_per_round": self.messages_per_round,
            "bytes_per_round": self.bytes_per_round,
        }


def directed_edges(shift: torch.Tensor) -> int:
    """Directed links of S: off-diagonal nonzeros (an undirected edge counts twice, one message each way)."""
    coo = (shift.to_sparse_coo() if shift.layout != torch.strided else shift.to_sparse()).coalesce()
    rows, cols = coo.indices()
    return int(((rows != cols) & (coo.values() != 0)).sum())


def gossip_cost(rounds: int, edges: int, floats: int, vectors: int = 1) -> CommCost:
    """Every agent sends ``vectors`` vectors to each neighbour once per round."""
    return CommCost(rounds, (Leg(edges, vectors),), floats)


def unrolled_cost(layers: int, hops: int, edges: int, floats: int, vectors: int = 1) -> CommCost:
    """U-DGD: K rounds per layer (one per hop of the graph filter) over every directed edge; each message carries the
    model plus one vector per communicated step feature (``surf.models.features``: ``vectors`` in all)."""
    return gossip_cost(layers * hops, edges, floats, vectors)


def server_cost(rounds: int, clients: int, per_round: int, floats: int, vectors: int = 1) -> CommCost:
    """Server-client: ``per_round`` participants upload, the server broadcasts to all ``clients``."""
    return CommCost(rounds, (Leg(min(per_round, clients), vectors), Leg(clients, vectors)), floats)
