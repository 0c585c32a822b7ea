"""Communication accounting from the real Flower messages: per edge and per round, messages and serialized bytes.

An edge is a directed pair of nodes (src -> dst) whose agents are graph neighbours; with one agent per node it is
an edge of the communication graph. An agent's message counts once per receiving node; all the messages from one
node to one other node in a round travel as one contiguous block of raw float32 rows (inside the one ``Array`` a
node sends per round, and the one it receives), and the block's size is the edge's bytes for that round: agents x
T x (d+1) x C x 4. Messages between agents of the same node never leave the node and are not counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Ledger:
    """Forwarded neighbour messages, keyed by (round, src node, dst node), and the wall time of every round."""

    edges: dict[tuple[int, int, int], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    rounds: list[dict] = field(default_factory=list)  # {"round", "kind", "layer", "hop", "seconds", "uplink_bytes"}

    def add(self, round_index: int, src: int, dst: int, nbytes: int, messages: int = 1) -> None:
        """``messages`` agent messages from node src to node dst in one round, packed in ``nbytes`` bytes."""
        entry = self.edges[(round_index, src, dst)]
        entry[0] += messages
        entry[1] += nbytes

    def close_round(self, kind: str, layer: int, hop: int, seconds: float, uplink_bytes: int) -> int:
        """Record a finished round; returns the index of the next one."""
        self.rounds.append({"round": len(self.rounds), "kind": kind, "layer": layer, "hop": hop,
                            "seconds": seconds, "uplink_bytes": uplink_bytes})
        return len(self.rounds)

    def summary(self) -> dict:
        """Totals, per-round and per-edge message and byte counts (JSON-ready)."""
        per_round: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        per_edge: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
        for (round_index, src, dst), (messages, nbytes) in self.edges.items():
            for table, key in ((per_round, round_index), (per_edge, (src, dst))):
                table[key][0] += messages
                table[key][1] += nbytes
        rounds = [{**r, "messages": per_round[r["round"]][0], "bytes": per_round[r["round"]][1]} for r in self.rounds]
        communication = [r for r in rounds if r["kind"] in ("hop", "prime")]
        return {
            "messages": sum(m for m, _ in per_edge.values()),
            "bytes": sum(b for _, b in per_edge.values()),
            "uplink_bytes": sum(r["uplink_bytes"] for r in rounds),
            "communication_rounds": len(communication),
            "seconds_per_round": sum(r["seconds"] for r in communication) / max(len(communication), 1),
            "per_round": rounds,
            "per_edge": [{"src": s, "dst": d, "messages": m, "bytes": b}
                         for (s, d), (m, b) in sorted(per_edge.items())],
        }
