"""Ray for the runtimes that use it: a local instance started for this process (no dashboard, no usage stats,
nothing on the network), or an existing cluster joined by address (``ray://HOST:PORT``, ``HOST:PORT`` or ``auto``),
and the cluster's shape that tasks size their resources from. ``ray`` is imported only when called."""

from __future__ import annotations

import os
from pathlib import Path

SOURCE = str(Path(__file__).resolve().parents[2])  # this source tree: what workers must import
MAX_WORKERS = 4096  # tasks at once (--workers): each is a worker process; a local instance also sizes its CPUs from
#   it, and Ray refuses more than 1e14 of them with a traceback


QUIET_ENV = {  # environment defaults for every Ray this project starts (a value you set wins)
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # CPU tasks: leave CUDA_VISIBLE_DEVICES alone (and no FutureWarning)
}


def _quiet_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def start_ray(workers: int, use_gpu: bool) -> None:
    """Start a local Ray instance for ``workers`` workers (at least every core) unless one is already running."""
    import ray
    import torch

    if ray.is_initialized():
        return
    _quiet_environment()
    # workers inherit the environment: they import this source tree
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE, os.environ.get("PYTHONPATH", "")) if p)
    num_gpus = torch.cuda.device_count() if use_gpu else 0
    ray.init(num_cpus=max(workers, os.cpu_count() or 1), num_gpus=num_gpus, include_dashboard=False,
             log_to_driver=False, configure_logging=False)


def connect(address: str | None, workers: int, use_gpu: bool = False) -> None:
    """Join the Ray cluster at ``address``, or start a local instance for ``workers`` when it is None.

    On a cluster, workers get this source tree on their ``PYTHONPATH``: a checkout at the same path on every node
    (a shared filesystem) runs exactly the driver's code; a path missing on a node leaves the node's installed surf.
    """
    import ray

    if ray.is_initialized():
        return
    if address is None:
        start_ray(workers, use_gpu)
        return
    _quiet_environment()
    ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": SOURCE}}, log_to_driver=False,
             configure_logging=False)


def node_cpus() -> int:
    """CPUs of the largest alive node: the most one task can be given."""
    import ray

    return max(int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]) or 1


def cluster_gpus() -> int:
    """GPUs in the whole cluster."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> int:
    """CPUs in the whole cluster."""
    import ray

    return int(ray.cluster_resources().get("CPU", 1))
