"""The ServerApp side of ``surf deploy --runtime flower-deployment``: SURF's jobs on the SuperNodes of a running
SuperLink, each SuperNode holding one node's data file.

The ServerApp reads the run directory (best model) and the resolved config, waits until M SuperNodes are connected,
asks each which shard its data file holds (``query.hello``; the fingerprint must match the deployed run), runs the
jobs through the relay with that placement and writes ``summary.json`` to its status folder (or ``error.txt``, one
line). Progress goes to ``progress.txt`` there, one line per step, which ``surf deploy`` prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from surf.config import load
from surf.data.shares import split_agents
from surf.families.classifier.family import ClassifierFamily
from surf.runtime.flower.deploy import deploy_jobs, summarize
from surf.runtime.flower.partition import fingerprint
from surf.runtime.flower.relay import Relay, discover
from surf.training.rundir import RunDir
from surf.utils.io import atomic_write

RUN_CONFIG = {  # the Flower app's run config (pyproject [tool.flwr.app.config]) and its defaults
    "run-dir": "", "config": "", "nodes": 1, "tasks": 1, "round-timeout": 60.0, "baselines": "dgd,dgd_momentum,dsgd",
    "rejoin": "resume", "status": "", "connect-timeout": 120.0,
}


class Status:
    """The files through which the ServerApp tells ``surf deploy`` how it is going."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.progress, self.summary, self.error = (self.folder / name for name in
                                                   ("progress.txt", "summary.json", "error.txt"))

    def say(self, line: str) -> None:
        with self.progress.open("a") as handle:
            handle.write(line + "\n")

    def fail(self, message: str) -> None:
        atomic_write(self.error, message.replace("\n", " ") + "\n")


def placement(grid: Any, exp: ClassifierFamily, nodes: int, timeout: float) -> dict[int, int]:
    """Shard -> SuperNode id, from what every connected SuperNode's data file holds."""
    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < nodes and time.monotonic() < deadline:
        time.sleep(0.2)
    node_ids = sorted(grid.get_node_ids())
    if len(node_ids) < nodes:
        raise RuntimeError(f"{len(node_ids)} of {nodes} SuperNodes connected within {timeout:.0f} s; start one per "
                           "node data file")
    shards, expected = split_agents(exp.cfg.num_agents, nodes), fingerprint(exp, nodes)
    where = {}
    for node, (agents, stamp) in discover(grid, node_ids, timeout).items():
        if stamp != expected:
            raise RuntimeError(f"SuperNode {node} holds data for another run or split (fingerprint {stamp or 'none'},"
                               f" expected {expected}); rerun `surf partition` for this run and --nodes {nodes}")
        if agents in shards:
            where[shards.index(agents)] = node
    missing = next((s for s in range(nodes) if s not in where), None)
    if missing is not None:
        raise RuntimeError(f"no SuperNode holds the data file of node {missing} (agents {shards[missing][0]}.."
                           f"{shards[missing][-1]}); start one with --node-config 'data=\".../node_{missing}.npz\"'")
    return where


def run_on_grid(grid: Any, config: dict, status: Status) -> dict:
    """Deploy the run of the app's run config on the grid's SuperNodes; returns the summary as a dict."""
    exp = ClassifierFamily(load(config["config"]))
    model = RunDir(config["run-dir"]).best_model(exp)
    nodes, timeout = int(config["nodes"]), float(config["round-timeout"]) or None
    baselines = tuple(name for name in str(config["baselines"]).split(",") if name)
    where = placement(grid, exp, nodes, float(config["connect-timeout"]))
    jobs, steps = deploy_jobs(exp, model, nodes, int(config["tasks"]), timeout, baselines,
                              rejoin=str(config["rejoin"]))
    start, results = time.perf_counter(), []
    for job in jobs:
        relay = Relay(grid, [], job, where, progress=status.say, fingerprint=fingerprint(exp, nodes))
        results.append(relay.run())
        where = {s: node for s, node in relay.node.items() if s not in relay.out or s in relay.kept_out}
    summary = summarize(exp, jobs, results, steps, time.perf_counter() - start, "flower-deployment", "deployment")
    return summary.to_dict()


def main(grid: Any, context: Any) -> None:
    """The deployment ServerApp's entry point (``surf.runtime.flower.app:serverapp``)."""
    config = {**RUN_CONFIG, **dict(context.run_config)}
    status = Status(config["status"])
    try:
        summary = run_on_grid(grid, config, status)
    except Exception as exc:
        status.fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc))
        raise
    atomic_write(status.summary, json.dumps(summary, indent=2) + "\n")
