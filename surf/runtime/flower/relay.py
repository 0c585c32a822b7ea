"""The SURF ServerApp: a graph-aware relay, not an aggregator.

For every step (layer or DGD round) and every hop the relay sends each node exactly the messages of its agents'
outside neighbours, as the serialized Flower ``Array`` s they replied with in the previous round; it never opens
them, so it never sees or computes ``S W``. It knows the graph (to route), the drop schedule (the scenario) and who
answered. A node whose reply is an error or does not come back within ``round_timeout`` is dropped for that step:
its agents keep their models, its missing messages are filled by the receivers (stale or zero, as in the core
engine) and the report lists it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from surf.runtime.flower.accounting import Ledger
from surf.runtime.flower.node import ShardSpec

Inactive = Callable[[int], torch.Tensor]  # step t = 1, 2, ... -> (N, T) bool: agents scheduled as dropped


@dataclass
class Job:
    """One deployment through the relay: a method, its tasks (batched: every message carries all T tasks)."""

    name: str
    config_yaml: str  # the resolved config (surf.config.to_dict dumped as YAML)
    shift: torch.Tensor  # (N, N) dense GSO: the relay routes by its sparsity, nodes get their rows
    method: str  # surf | dgd | dsgd | echo
    tasks: list[tuple[str, int, bool]]
    agents_per_node: int = 1
    theta: dict[str, torch.Tensor] | None = None  # the trained parameters (surf), broadcast once at setup
    steps: int = 0  # layers (surf) or rounds (dgd, dsgd, echo)
    hops: int = 1
    step_size: float = 0.0
    momentum: float = 0.0
    inactive: Inactive | None = None
    async_mode: str = "stale"
    round_timeout: float | None = None  # seconds; None = wait for every node
    keep_history: bool = False


@dataclass
class JobResult:
    """Per-step metrics (index 0 = W_0) for every task, drops, accounting and (optionally) every model."""

    name: str
    accuracy: torch.Tensor | None = None  # (steps + 1, T), mean over agents
    loss: torch.Tensor | None = None
    grad_norm: torch.Tensor | None = None  # ||stacked full local gradients||_F per step and task
    history: torch.Tensor | None = None  # (steps + 1, N, T, d+1, C)
    dropped: list[dict] = field(default_factory=list)  # {"step", "agents", "node", "reason"}
    scheduled_drops: int = 0  # (agent, task, step) triples the scenario dropped
    ledger: Ledger = field(default_factory=Ledger)
    seconds: float = 0.0


class Relay:
    """Runs one job on the grid's nodes."""

    def __init__(self, grid: Any, node_ids: list[int], job: Job) -> None:
        n, m = job.shift.shape[0], job.agents_per_node
        self.grid, self.job, self.uid = grid, job, uuid.uuid4().hex
        self.shards = [list(range(s, min(s + m, n))) for s in range(0, n, m)]
        if len(self.shards) > len(node_ids):
            raise ValueError(f"{len(self.shards)} nodes needed, {len(node_ids)} available")
        self.nodes = node_ids[: len(self.shards)]
        self.node_of = {agent: s for s, agents in enumerate(self.shards) for agent in agents}
        self.columns = []
        for agents in self.shards:
            heard = torch.nonzero(job.shift[agents].abs().sum(0)).flatten().tolist()
            self.columns.append(agents + sorted(set(heard) - set(agents)))
        self.result = JobResult(job.name)
        self.latest: dict[int, Any] = {}  # agent -> the Array it sent last round (its next-channel message)
        self.lost: list[set[int]] = [set() for _ in self.shards]  # steps in which a node's messages were lost

    def _send(self, kind: str, make: Callable[[int], Any], skip: set[int] = frozenset()) -> tuple[dict, set[int]]:
        """One round: a message per node (``make(s)``); replies by shard, and the shards that failed."""
        from flwr.app import Message

        messages, sent = [], []
        for s, node in enumerate(self.nodes):
            if s not in skip:
                messages.append(Message(make(s), dst_node_id=node, message_type=kind))
                sent.append(s)
        shard_of_node = {node: s for s, node in enumerate(self.nodes)}
        replies, failed = {}, {}
        for reply in self.grid.send_and_receive(messages, timeout=self.job.round_timeout):
            s = shard_of_node[reply.metadata.src_node_id]
            if reply.has_error():
                failed[s] = "error: " + _last_line(reply.error.reason)
            else:
                replies[s] = reply.content
        failed.update({s: "timeout" for s in sent if s not in replies and s not in failed})
        return replies, failed

    def run(self) -> JobResult:
        job, start = self.job, time.perf_counter()
        if job.method == "echo":
            self._echo()
        else:
            self._setup()
            if job.inactive is not None and job.async_mode == "stale":
                for k in range(1, job.hops + 1):  # "everyone transmitted at setup": fill the stale buffers
                    self._hop(0, k, set())
            for step in range(1, job.steps + 1):
                failed: set[int] = set()
                for k in range(1, job.hops + 1):
                    failed |= self._hop(step, k, failed)
            self._report()
        self.result.seconds = time.perf_counter() - start
        return self.result

    def _echo(self) -> None:
        from flwr.app import RecordDict

        for step in range(1, self.job.steps + 1):
            start = time.perf_counter()
            self._send("query.echo", lambda s: RecordDict())
            self.result.ledger.close_round("echo", step, 1, time.perf_counter() - start, 0)

    def _setup(self) -> None:
        from flwr.app import ConfigRecord, RecordDict

        from surf.runtime.flower.client import to_record

        job, start = self.job, time.perf_counter()

        def make(s: int) -> Any:
            spec = ShardSpec(job.name, job.config_yaml, job.method, job.tasks, self.shards[s], self.columns[s],
                             job.async_mode, job.step_size, job.momentum, job.steps, job.keep_history, self.uid)
            rows = job.shift[self.shards[s]][:, self.columns[s]]
            content = RecordDict({"spec": ConfigRecord({"spec": spec.to_json()}), "rows": to_record({"rows": rows})})
            if job.theta is not None:
                content["theta"] = to_record(job.theta)
            return content

        replies, failed = self._send("query.setup", make)
        if failed:
            raise RuntimeError(_failure("at setup", failed))
        self._collect(replies)
        self.result.ledger.close_round("setup", 0, 0, time.perf_counter() - start, self._uplink(replies))

    def _collect(self, replies: dict) -> None:
        self.latest = {int(key[1:]): array for content in replies.values() for key, array in content["outbox"].items()}

    @staticmethod
    def _uplink(replies: dict) -> int:
        return sum(len(a.data) for content in replies.values() for a in content["outbox"].values())

    def _hop(self, step: int, k: int, failed: set[int]) -> set[int]:
        """Hop k of a step: route the channel-k messages; returns the shards that failed in this step so far."""
        from flwr.app import ArrayRecord, ConfigRecord, RecordDict

        job, ledger = self.job, self.result.ledger
        num_tasks, round_index = len(job.tasks), len(ledger.rounds)
        inactive = job.inactive(step) if job.inactive is not None and step > 0 else None
        if inactive is not None and k == 1:
            self.result.scheduled_drops += int(inactive.sum())
        start = time.perf_counter()

        def make(s: int) -> RecordDict:
            own = self.shards[s]
            inbox, present = ArrayRecord(), ConfigRecord()
            for j in self.columns[s][len(own):]:
                flags = ~inactive[j] if inactive is not None else torch.ones(num_tasks, dtype=torch.bool)
                if j in self.latest and bool(flags.any()):
                    inbox[f"a{j}"] = self.latest[j]
                    present[f"a{j}"] = flags.tolist()
                    ledger.add(round_index, self.node_of[j], s, len(self.latest[j].data))
            mine = inactive[own].flatten().int().tolist() if inactive is not None else []
            hop = ConfigRecord({"layer": step, "k": k, "inactive": mine, "dropped": sorted(self.lost[s])})
            return RecordDict({"hop": hop, "inbox": inbox, "present": present})

        replies, newly_failed = self._send("train.hop", make, skip=failed)
        self._collect(replies)
        for s, reason in newly_failed.items():
            self.lost[s].add(step)
            self.result.dropped.append({"step": step, "hop": k, "node": s, "agents": self.shards[s],
                                        "reason": reason})
        ledger.close_round("prime" if step == 0 else "hop", step, k, time.perf_counter() - start,
                           self._uplink(replies))
        return failed | set(newly_failed)

    def _report(self) -> None:
        from flwr.app import ConfigRecord, RecordDict

        from surf.runtime.flower.client import from_record

        start = time.perf_counter()
        replies, failed = self._send(
            "query.report", lambda s: RecordDict({"report": ConfigRecord({"dropped": sorted(self.lost[s])})}))
        if failed:
            raise RuntimeError(_failure("to report", failed))
        metrics = [from_record(replies[s]["metrics"]) for s in range(len(self.shards))]
        cat = {key: torch.cat([m[key] for m in metrics], dim=1) for key in metrics[0]}  # agents: dim 1
        result = self.result
        result.accuracy, result.loss = cat["accuracy"].mean(1), cat["loss"].mean(1)
        result.grad_norm = cat["grad2"].sum(1).sqrt()
        result.history = cat.get("history")
        result.ledger.close_round("report", self.job.steps, 0, time.perf_counter() - start, 0)


def _failure(when: str, failed: dict[int, str]) -> str:
    node, reason = next(iter(sorted(failed.items())))
    return f"flower runtime: {len(failed)} node(s) failed {when}; node {node}: {reason}"


def _last_line(reason: str) -> str:
    """The informative end of a ClientApp error (Ray wraps the exception message in its traceback)."""
    lines = [line.strip() for line in reason.rstrip("'>").splitlines() if line.strip()]
    return lines[-1][-200:] if lines else "unknown error"


def server_app(jobs: list[Job], results: list[JobResult], num_nodes: int, wait: float = 120.0) -> Any:
    """A ServerApp running ``jobs`` one after the other on the same nodes, appending to ``results``.

    It waits up to ``wait`` seconds for ``num_nodes`` SuperNodes to register.
    """
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        deadline = time.monotonic() + wait
        while len(list(grid.get_node_ids())) < num_nodes and time.monotonic() < deadline:
            time.sleep(0.05)
        node_ids = sorted(grid.get_node_ids())
        for job in jobs:
            results.append(Relay(grid, node_ids, job).run())

    return app
