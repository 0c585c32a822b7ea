"""The SURF ServerApp: a graph-aware relay, not an aggregator.

For every step (layer or DGD round) and every hop the relay sends each node exactly the messages of its agents'
outside neighbours. Messages are packed: a node replies ONE ``Array`` per round, a contiguous block of raw rows per
destination node (the rows of its agents that node hears from), and receives ONE ``Array`` holding the blocks of its
source nodes. The relay cuts and joins these blocks as byte ranges; it never reads the values, so it never sees or
computes ``S W``. It knows the graph (to route), the drop schedule (the scenario) and who answered, and it counts
every agent message it forwards, per pair of nodes (``accounting``).

Failures: a node whose ClientApp raised is dropped for the rest of that step and asked again at the next one. A node
that does not answer within ``round_timeout`` (or that the SuperLink reports unavailable: a killed SuperNode) is out
from that round on: its agents count as dropped (their neighbours fill their messages, stale or zero, as in the
engine) and ``faults`` records when. On a deployment a SuperNode that comes back with the same data file rejoins at
the start of a step with the last state it saved (``rejoin="resume"``) or is kept out and only reports its agents'
frozen models at the end (``rejoin="out"``); one whose data file is of another run is refused (``faults``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from surf.data.shares import split_agents
from surf.runtime.flower.accounting import Ledger
from surf.runtime.flower.node import ShardSpec
from surf.runtime.flower.routing import Routing
from surf.runtime.flower.wire import (
    flags_to_bytes,
    from_record,
    inbox_records,
    outbox_blocks,
    packed_record,
    to_record,
)

Inactive = Callable[[int], torch.Tensor]  # step t = 1, 2, ... -> (N, T) bool: agents scheduled as dropped
ALIVE_ERRORS = {1, 2, 6, 8}  # Flower error codes of a node that is up but whose ClientApp failed


@dataclass
class Job:
    """One deployment through the relay: a method, its tasks (batched: every message carries all T tasks)."""

    name: str
    config_yaml: str  # the resolved config (surf.config.to_dict dumped as YAML)
    shift: torch.Tensor  # (N, N) GSO, dense or sparse: the relay routes by its sparsity, nodes get their rows
    method: str  # surf | dgd | dsgd | echo
    tasks: list[tuple[str, int, bool]]
    nodes: int = 1  # agents split into this many contiguous shards (surf.data.shares.split_agents)
    theta: dict[str, torch.Tensor] | None = None  # the trained parameters (surf), broadcast once at setup
    steps: int = 0  # layers (surf) or rounds (dgd, dsgd, echo)
    hops: int = 1
    step_size: float = 0.0
    momentum: float = 0.0
    inactive: Inactive | None = None
    async_mode: str = "stale"
    round_timeout: float | None = None  # seconds; None = wait for every node
    keep_history: bool = False
    prime: bool = False  # fill the stale buffers at setup even without scheduled drops (deployments: faults)
    rejoin: str = "resume"  # a restarted SuperNode: resume with its last state | out (kept out, reports at the end)


@dataclass
class JobResult:
    """Per-step metrics (index 0 = W_0) for every task, drops, faults, accounting and (optionally) every model."""

    name: str
    accuracy: torch.Tensor | None = None  # (steps + 1, T), mean over the agents that reported
    loss: torch.Tensor | None = None
    grad_norm: torch.Tensor | None = None  # ||stacked full local gradients||_F per step and task
    history: torch.Tensor | None = None  # (steps + 1, N, T, d+1, C)
    dropped: list[dict] = field(default_factory=list)  # {"step", "hop", "node", "agents", "reason", "seconds"}
    faults: list[dict] = field(default_factory=list)  # nodes out / back: {"event", "step", "hop", "node", ...}
    unreported: list[int] = field(default_factory=list)  # agents of nodes that were gone at the end
    scheduled_drops: int = 0  # (agent, task, step) triples the scenario dropped
    audit: list[dict] = field(default_factory=list)  # per node: where its data came from, the shapes it held
    ledger: Ledger = field(default_factory=Ledger)
    seconds: float = 0.0


def exchange(grid: Any, messages: list, timeout: float | None) -> list:
    """Push ``messages`` and pull their replies until all arrived, or until ``timeout`` seconds after the first reply
    (after the start while none came): a node is late relative to the others, so a loaded machine that slows every
    node does not make them all late. Polls with a short, growing interval (Flower's ``send_and_receive`` sleeps
    3 s between pulls on a deployment)."""
    pending = set(grid.push_messages(messages))
    replies, wait = [], 0.002
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending and (deadline is None or time.monotonic() < deadline):
        arrived = list(grid.pull_messages(pending))
        if arrived and not replies and timeout is not None:
            deadline = time.monotonic() + timeout
        replies += arrived
        pending -= {reply.metadata.reply_to_message_id for reply in arrived}
        if pending and not arrived:
            time.sleep(wait)
            wait = min(2 * wait, 0.1)
        elif arrived:
            wait = 0.002
    return replies


class Relay:
    """Runs one job on the grid's nodes (``placement``: shard -> node id of nodes that hold their data files)."""

    def __init__(self, grid: Any, node_ids: list[int], job: Job, placement: dict[int, int] | None = None,
                 progress: Callable[[str], None] | None = None, fingerprint: str | None = None) -> None:
        self.grid, self.job, self.uid, self.progress = grid, job, uuid.uuid4().hex, progress
        self.fingerprint = fingerprint  # of the data files the placement was checked against (a deployment)
        self.refused: set[int] = set()  # SuperNodes that came back with another run's data file
        self.routing = Routing(job.shift, split_agents(job.shift.shape[0], job.nodes))
        if placement is None and len(self.routing) > len(node_ids):
            raise ValueError(f"{len(self.routing)} nodes needed, {len(node_ids)} available")
        self.placement = placement
        self.node: dict[int, int] = dict(placement) if placement else dict(enumerate(node_ids[: len(self.routing)]))
        self.out: dict[int, int] = {}  # shard -> step since which it is out
        self.kept_out: set[int] = set()  # shards back but kept out (rejoin="out"): they only report
        self.lost: list[set[int]] = [set() for _ in self.routing.shards]  # steps in which a node's messages were lost
        self.latest: dict[tuple[int, int], tuple[Any, np.ndarray]] = {}  # (src, dst) -> block of rows, its agents
        self.dtype = "float32"  # of the rows the nodes send
        self.result = JobResult(job.name)
        self.start = time.perf_counter()
        for s in range(len(self.routing)):
            if s not in self.node:  # no SuperNode holds it (it died in an earlier job): out from the start
                self._fail(s, 0, 0, "no SuperNode", alive=False)

    # ------------------------------------------------------------------ transport
    def _send(self, kind: str, make: Callable[[int], Any], shards: list[int],
              timeout: float | None = None) -> tuple[dict, dict]:
        """One round: a message per shard; its replies, and the shards that failed with (reason, alive)."""
        from flwr.app import Message

        messages = [Message(make(s), dst_node_id=self.node[s], message_type=kind) for s in shards]
        arrived = exchange(self.grid, messages, timeout or self.job.round_timeout)
        shard_of = {message.metadata.message_id: s for message, s in zip(messages, shards, strict=True)}
        replies, failed = {}, {}
        for reply in arrived:  # an error the SuperLink makes for an unavailable node comes from the SuperLink
            s = shard_of[reply.metadata.reply_to_message_id]
            if reply.has_error():
                failed[s] = ("error: " + _last_line(reply.error.reason), reply.error.code in ALIVE_ERRORS)
            else:
                replies[s] = reply.content
        failed.update({s: ("timeout", False) for s in shards if s not in replies and s not in failed})
        return replies, failed

    def _cold_wait(self) -> float:
        """How long a ClientApp's first message may take: it imports torch and loads its node data first."""
        return max(60.0, 3 * (self.job.round_timeout or 0.0))

    def _active(self) -> list[int]:
        return [s for s in range(len(self.routing)) if s not in self.out]

    # ------------------------------------------------------------------ the job
    def run(self) -> JobResult:
        job = self.job
        if job.method == "echo":
            self._echo()
        else:
            self._setup()
            if job.async_mode == "stale" and (job.inactive is not None or job.prime):
                for k in range(1, job.hops + 1):  # "everyone transmitted at setup": fill the stale buffers
                    self._hop(0, k, set())
            for step in range(1, job.steps + 1):
                if self.progress is not None:
                    self.progress(f"relay job {job.name}: step {step}/{job.steps}, {len(self.out)} node(s) out")
                if self.out and self.placement is not None:
                    self._admit(step)
                for s in self.out:
                    self.lost[s].add(step)
                failed: set[int] = set()
                for k in range(1, job.hops + 1):
                    failed |= self._hop(step, k, failed)
            self._report()
        self.result.seconds = time.perf_counter() - self.start
        return self.result

    def _echo(self) -> None:
        from flwr.app import RecordDict

        for step in range(1, self.job.steps + 1):
            start = time.perf_counter()
            self._send("query.echo", lambda s: RecordDict(), list(range(len(self.routing))))
            self.result.ledger.close_round("echo", step, 1, time.perf_counter() - start, 0)

    def _inactive(self, step: int) -> torch.Tensor | None:
        return self.job.inactive(step) if self.job.inactive is not None and step > 0 else None

    def _quiet(self, step: int, k: int) -> torch.Tensor | None:
        """(N, T) agents that sit out the round consuming the replies of hop k of ``step`` (k = 0: setup)."""
        job = self.job
        if k == 0:
            return None if job.async_mode == "stale" and (job.inactive is not None or job.prime) else \
                self._inactive(1)
        if k < job.hops:
            return self._inactive(step)
        if step == job.steps:  # the last model goes nowhere
            return torch.ones(job.shift.shape[0], len(job.tasks), dtype=torch.bool)
        return self._inactive(step + 1)

    def spec(self, s: int) -> Any:
        """The setup message of shard s: its spec, its rows of S (unless it reads them from its data file), Θ."""
        from flwr.app import ConfigRecord, RecordDict

        job, routing = self.job, self.routing
        spec = ShardSpec(job.name, job.config_yaml, job.method, job.tasks, routing.shards[s], routing.columns[s],
                         {str(d): agents for d, agents in routing.routes[s].items()}, job.async_mode, job.step_size,
                         job.momentum, job.steps, job.keep_history, self.uid)
        content = RecordDict({"spec": ConfigRecord({"spec": spec.to_json()})})
        if self.placement is None:
            content["rows"] = to_record({"rows": routing.rows(s)})
        if job.theta is not None:
            content["theta"] = packed_record(job.theta)
        return content

    def _setup(self) -> None:
        from flwr.app import ConfigRecord

        start, quiet = time.perf_counter(), self._quiet(0, 0)

        def make(s: int) -> Any:
            content = self.spec(s)
            content["hop"] = ConfigRecord({"quiet": flags_to_bytes(_rows(quiet, self.routing.shards[s]))})
            return content

        # the setup is each ClientApp's first message: it starts cold (imports, node data), so it gets the cold wait
        replies, failed = self._send("query.setup", make, self._active(),
                                     self._cold_wait() if self.job.round_timeout else None)
        if len(failed) == len(self._active()):
            raise RuntimeError(_failure("at setup", failed))
        for s, (reason, _) in failed.items():  # out from the start: its agents never send
            self._fail(s, 0, 0, reason, alive=False)
        uplink = self._collect(replies)
        self.result.ledger.close_round("setup", 0, 0, time.perf_counter() - start, uplink)

    def _collect(self, replies: dict) -> int:
        """Cut every reply's Array into its per-destination blocks (byte ranges: the relay never reads the values)
        and keep them for the next round; returns the replies' bytes (node -> relay)."""
        self.latest, uplink = {}, 0
        for s, content in replies.items():
            blocks, self.dtype, size = outbox_blocks(content)
            for dst, block, agents in blocks:
                self.latest[(s, dst)] = (block, agents)
            uplink += size
        return uplink

    def _hop(self, step: int, k: int, failed: set[int]) -> set[int]:
        """Hop k of a step: route the channel-k messages; returns the shards that failed in this step so far."""
        from flwr.app import ConfigRecord, RecordDict

        ledger, routing = self.result.ledger, self.routing
        round_index, inactive, quiet = len(ledger.rounds), self._inactive(step), self._quiet(step, k)
        if inactive is not None and k == 1:
            self.result.scheduled_drops += int(inactive.sum())
        present = (~inactive).numpy() if inactive is not None else None
        inboxes: dict[int, list] = {}
        for (src, dst), (array, agents) in self.latest.items():
            inboxes.setdefault(dst, []).append((src, array, agents))
        start = time.perf_counter()

        def make(s: int) -> RecordDict:
            blocks = inboxes.get(s, [])
            for src, block, agents in blocks:
                ledger.add(round_index, src, s, len(block), len(agents))
            inbox, senders = inbox_records(blocks, self.dtype, present)
            own = routing.shards[s]
            hop = ConfigRecord({"layer": step, "k": k, "inactive": flags_to_bytes(_rows(inactive, own)),
                                "quiet": flags_to_bytes(_rows(quiet, own)), "lost": sorted(self.lost[s])})
            return RecordDict({"hop": hop, "inbox": inbox, "senders": senders})

        shards = [s for s in self._active() if s not in failed]
        replies, newly_failed = self._send("train.hop", make, shards)
        uplink = self._collect(replies)
        for s, (reason, alive) in newly_failed.items():
            self._fail(s, step, k, reason, alive)
        ledger.close_round("prime" if step == 0 else "hop", step, k, time.perf_counter() - start, uplink)
        return failed | set(newly_failed)

    def _fail(self, s: int, step: int, k: int, reason: str, alive: bool) -> None:
        """Shard s lost its messages of ``step`` from hop k on; a node that is not up is out from then on."""
        self.lost[s].add(step)
        event = {"step": step, "hop": k, "node": s, "agents": self.routing.shards[s], "reason": reason,
                 "seconds": round(time.perf_counter() - self.start, 3)}
        self.result.dropped.append(event)
        if not alive:
            self.out[s] = step
            self.result.faults.append({"event": "out", **event})

    def _admit(self, step: int) -> None:
        """Before ``step``: SuperNodes not seen before say which shard they hold; one holding a shard that is out
        takes it back with its last saved state (``rejoin``), in the run again or kept out until the report."""
        known = set(self.node.values()) | self.refused
        fresh = [node for node in self.grid.get_node_ids() if node not in known]
        if not fresh:
            return
        wait = self._cold_wait()  # a restarted SuperNode starts its ClientApp cold
        holders = discover(self.grid, fresh, wait)
        for node, (agents, stamp) in holders.items():
            s = next((s for s in self.out if self.routing.shards[s] == agents and s not in self.kept_out), None)
            if s is None:
                continue
            if self.fingerprint is not None and stamp != self.fingerprint:  # the right agents, another run's data
                self.refused.add(node)
                self.result.faults.append({"event": "rejoin refused", "step": step, "node": s,
                                           "agents": self.routing.shards[s], "reason": f"its data file is of another "
                                           f"run or split (fingerprint {stamp or 'none'})",
                                           "seconds": round(time.perf_counter() - self.start, 3)})
                continue
            self.node[s] = node
            _, failed = self._send("query.rejoin", self.spec, [s], wait)
            event = {"step": step, "node": s, "agents": self.routing.shards[s],
                     "seconds": round(time.perf_counter() - self.start, 3)}
            if failed:
                self.result.faults.append({"event": "rejoin failed", "reason": failed[s][0], **event})
            elif self.job.rejoin == "resume":
                del self.out[s]
                self.result.faults.append({"event": "rejoined", **event})
            else:
                self.kept_out.add(s)
                self.result.faults.append({"event": "kept out", **event})

    def _report(self) -> None:
        from flwr.app import ConfigRecord, RecordDict

        start, routing = time.perf_counter(), self.routing
        shards = [s for s in range(len(routing)) if s not in self.out or s in self.kept_out]
        replies, failed = self._send(
            "query.report", lambda s: RecordDict({"report": ConfigRecord({"lost": sorted(self.lost[s])})}), shards)
        if len(failed) == len(shards):
            raise RuntimeError(_failure("to report", failed))
        reported = sorted(replies)
        self.result.unreported = sorted(a for s in range(len(routing)) if s not in replies for a in routing.shards[s])
        metrics = [from_record(replies[s]["metrics"]) for s in reported]
        self.result.audit = [{"node": s, **dict(replies[s]["audit"])} for s in reported]
        cat = {key: torch.cat([m[key] for m in metrics], dim=1) for key in metrics[0]}  # agents: dim 1
        result = self.result
        result.accuracy, result.loss = cat["accuracy"].mean(1), cat["loss"].mean(1)
        result.grad_norm = cat["grad2"].sum(1).sqrt()
        result.history = cat.get("history")
        result.ledger.close_round("report", self.job.steps, 0, time.perf_counter() - start, 0)


def discover(grid: Any, node_ids: list[int], timeout: float) -> dict[int, tuple[list[int], str]]:
    """Ask SuperNodes which agents their data files hold: node id -> (agents, fingerprint); silent nodes omitted."""
    from flwr.app import Message, RecordDict

    messages = [Message(RecordDict(), dst_node_id=node, message_type="query.hello") for node in node_ids]
    return {reply.metadata.src_node_id: (list(reply.content["share"]["agents"]),
                                         str(reply.content["share"]["fingerprint"]))
            for reply in exchange(grid, messages, timeout) if not reply.has_error()}


def _rows(mask: torch.Tensor | None, agents: list[int]) -> torch.Tensor | None:
    """A shard's rows of an (N, T) mask."""
    return mask[agents] if mask is not None else None


def _failure(when: str, failed: dict[int, tuple[str, bool]]) -> str:
    node, (reason, _) = next(iter(sorted(failed.items())))
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
