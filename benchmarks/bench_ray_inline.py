"""Ray: the cost of one actor call by argument size, around the 100 KB line above which Ray moves an object through
its object store instead of inline (why ``surf.runtime.flower.simulation.RAY_ENV`` raises it: a Flower node's Context
is ~200 KB). Run alone, once as is and once with the simulation's setting, and compare:

    python benchmarks/bench_ray_inline.py
    RAY_max_direct_call_object_size=2097152 python benchmarks/bench_ray_inline.py
"""

from __future__ import annotations

import argparse
import os
import time

SIZES = [1_000, 50_000, 90_000, 110_000, 220_000, 440_000]  # bytes passed to the actor and returned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="bytes per call (argument and return)")
    parser.add_argument("--calls", type=int, default=50, help="calls timed per size")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")

    @ray.remote
    class Echo:
        def run(self, value: bytes) -> bytes:
            return value

    actor = Echo.remote()
    ray.get(actor.run.remote(b""))  # the actor is up
    limit = os.environ.get("RAY_max_direct_call_object_size", "Ray's default (100 KB)")
    print(f"RAY_max_direct_call_object_size: {limit}")
    for size in args.sizes:
        value = b"x" * size
        start = time.perf_counter()
        for _ in range(args.calls):
            ray.get(actor.run.remote(value))
        print(f"{size:>8,} bytes: {1000 * (time.perf_counter() - start) / args.calls:6.2f} ms per call")
    ray.shutdown()


if __name__ == "__main__":
    main()
