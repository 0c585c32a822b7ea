"""Module-level Flower components for a real deployment (SuperLink + SuperNodes across machines, ``flwr run``).

``clientapp`` is the ClientApp the simulation runs; ``serverapp`` runs ``surf deploy``'s jobs through the relay with
the run config of the Flower app (``run-dir``, ``agents-per-node``, ``tasks``, ``out``, ``round-timeout``) and
writes the same summary. See docs/flower.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.serverapp import ServerApp

from surf.runtime.flower.client import client_app
from surf.runtime.flower.relay import Relay

clientapp = client_app()
serverapp = ServerApp()


@serverapp.main()
def main(grid: Any, context: Any) -> None:
    """Deploy a trained run on the SuperNodes connected to this SuperLink."""
    import time

    from surf.config import load
    from surf.families.classifier.family import ClassifierFamily
    from surf.runtime.flower.deploy import deploy_jobs, summarize
    from surf.training.rundir import RunDir

    config = context.run_config
    per_node, timeout = int(config.get("agents-per-node", 1)), float(config.get("round-timeout", 0)) or None
    run = RunDir(str(config["run-dir"]))
    exp = ClassifierFamily(load(run.config))
    model = run.best_model(exp)
    jobs, steps = deploy_jobs(exp, model, per_node, int(config.get("tasks", exp.cfg.eval.test_tasks)), timeout)
    needed = -(-exp.cfg.num_agents // per_node)
    while len(list(grid.get_node_ids())) < needed:
        time.sleep(1.0)
    start = time.perf_counter()
    results = [Relay(grid, sorted(grid.get_node_ids()), job).run() for job in jobs]
    summary = summarize(exp, jobs, results, steps, time.perf_counter() - start, per_node, 0)
    summary.runtime.backend = "deployment"
    Path(str(config.get("out", "flower_summary.json"))).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
