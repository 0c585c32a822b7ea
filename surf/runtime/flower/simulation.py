"""Run relay jobs in Flower's simulation engine on the Ray backend, in-process and offline.

``flwr run`` would build and reinstall the app; ``run_simulation`` runs the same ServerApp and ClientApp objects in
this process (ServerApp in a thread, ClientApps in Ray actors) with telemetry and the update check switched off.
"""

from __future__ import annotations

import logging
import os

from surf.runtime.flower.relay import Job, JobResult, server_app
from surf.runtime.ray_cluster import QUIET_ENV

OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "RAY_USAGE_STATS_ENABLED": "0",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Ray passes a task argument or return value of up to 100 KB inline and anything larger through its object store,
# which costs about 10 ms more per call here (benchmarks/bench_ray_inline.py). A node's Context (its models, previous
# updates and stale messages: ~200 KB at 10 agents of the quickstart) crosses that line on every ClientApp call, so
# the simulation raises it to 2 MiB (an environment default: a RAY_max_direct_call_object_size you set wins).
RAY_ENV = {**QUIET_ENV, "RAY_max_direct_call_object_size": str(2 * 2**20)}


def run_jobs(jobs: list[Job], num_actors: int = 2, client_mods: list | None = None,
             verbose: bool = False) -> list[JobResult]:
    """Run ``jobs`` one after the other in one Flower simulation; nodes = the most any job needs.

    ``num_actors`` Ray actors (one CPU each) execute the ClientApps of all nodes in turn.
    """
    for key, value in {**OFFLINE_ENV, **RAY_ENV}.items():
        os.environ.setdefault(key, value)
    from flwr.simulation import run_simulation

    from surf.runtime.flower.client import client_app

    num_nodes = max(job.nodes for job in jobs)
    results: list[JobResult] = []
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": num_actors, "num_gpus": 0, "include_dashboard": False,
                      "logging_level": logging.INFO if verbose else logging.ERROR, "log_to_driver": verbose},
    }
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)
    try:
        run_simulation(server_app=server_app(jobs, results, num_nodes), client_app=client_app(client_mods),
                       num_supernodes=num_nodes, backend_config=backend_config, verbose_logging=verbose)
    finally:
        flwr_logger.setLevel(level)
    if len(results) != len(jobs):
        raise RuntimeError(f"flower simulation ended after {len(results)} of {len(jobs)} jobs")
    return results
