"""Flower relay without Ray: what one SURF ClientApp call and the relay's routing cost, on one thread.

The relay (the ServerApp's ``Relay``) and every node's ClientApp run in this process; a stand-in for the SuperLink
hands each message to the node's ClientApp with its own ``Context`` and keeps the reply. There is no Ray, no
serialization between processes and no dispatcher tick, so the numbers are the relay's and the nodes' own work,
stable enough to compare two revisions (run it in each tree, e.g. a git worktree, with ``PYTHONPATH`` set to it):

    PYTHONPATH=. python benchmarks/bench_relay_inprocess.py --run-dir RUN --agents 1000 --nodes 100
    PYTHONPATH=. python benchmarks/bench_relay_inprocess.py --run-dir RUN --agents 1000 --nodes 100 --profile 30

RUN is a trained quickstart run (``surf run simulations/quickstart.yaml -o trainer.steps=0 --out RUN`` is enough: a
round's cost does not depend on the trained values). Reports the wall time of the whole job (setup and every layer)
and the mean time of one hop call, for SURF and for the bare echo; ``--profile N`` prints the N most expensive
functions of the SURF job under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
import uuid

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


class LocalGrid:
    """A SuperLink stand-in: a message is answered by its node's ClientApp when pushed."""

    def __init__(self, nodes: int) -> None:
        from flwr.app import Context, RecordDict

        from surf.runtime.flower.client import client_app

        self.app = client_app()
        self.contexts = {i: Context(run_id=1, node_id=i, node_config={}, state=RecordDict(), run_config={})
                         for i in range(nodes)}
        self.replies: dict[str, object] = {}
        self.seconds: list[tuple[str, float]] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: list) -> list[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # what the SuperLink assigns
            ids.append(message.metadata.message_id)
            start = time.perf_counter()
            self.replies[message.metadata.message_id] = self.app(message, self.contexts[message.metadata.dst_node_id])
            self.seconds.append((message.metadata.message_type, time.perf_counter() - start))
        return ids

    def pull_messages(self, ids: set[str]) -> list:
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="a trained quickstart run")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--profile", type=int, default=0, help="print this many cProfile entries of the SURF job")
    args = parser.parse_args()

    import torch
    import yaml
    from flwr.supercore.task_identity import TaskIdentity

    from surf.app.registry import load_trained
    from surf.config import to_dict
    from surf.runtime.flower.relay import Job, Relay

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0  # a message outside a run needs them
    torch.set_num_threads(1)
    exp, model = load_trained(args.run_dir, [f"num_agents={args.agents}"])
    keys = [("test", 0, False)]
    shift = exp.shift_for(exp.task(*keys[0][:2])).cpu()
    theta = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    config_yaml = yaml.safe_dump(to_dict(exp.cfg))
    layers = exp.cfg.model.layers
    jobs = {"echo": Job("echo", "", shift, "echo", [], args.nodes, steps=layers, hops=1),
            "surf": Job("surf", config_yaml, shift, "surf", keys, args.nodes, theta=theta, steps=layers,
                        hops=exp.cfg.model.hops)}
    for name, job in jobs.items():
        grid, profiler = LocalGrid(args.nodes), cProfile.Profile()
        start = time.perf_counter()
        if args.profile and name == "surf":
            profiler.enable()
        Relay(grid, grid.get_node_ids(), job).run()
        profiler.disable()
        total = time.perf_counter() - start
        hops = [seconds for kind, seconds in grid.seconds if kind in ("train.hop", "query.echo")]
        print(f"{name}: {args.agents} agents in {args.nodes} nodes, job {total:.3f} s, "
              f"{1000 * sum(hops) / len(hops):.2f} ms per hop call ({len(hops)} calls)")
        if args.profile and name == "surf":
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
