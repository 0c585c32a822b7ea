"""The SURF ClientApp: a Flower node hosting a shard of agents (``query.setup``, ``train.hop``, ``query.report``).

The node's mutable state (models, previous updates, stale buffers, per-layer metrics) lives in Flower's
``Context.state`` as an ``ArrayRecord``; the setup message (spec, rows of S, the broadcast parameters Theta) is kept
there too, so any process can rebuild the node. What is slow to rebuild (data rows, the model module) is cached per
process. In the simulation every node loads its agents' rows from the keyed task sampler (all runtimes see the same
tasks); on a real deployment the same ClientApp would read the node's local data.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from surf.runtime.flower.node import Outbox, Shard, ShardSpec

_SHARDS: dict[tuple[str, tuple[int, ...]], Shard] = {}
_EXPERIMENTS: dict[str, Any] = {}
_TASKS: dict[tuple[str, tuple], Any] = {}
CACHE_SIZE = 4096  # shards kept per process (one per node and job)
TASK_CACHE = 256  # full tasks kept per process


def to_record(tensors: dict[str, torch.Tensor]) -> Any:
    """Tensors -> Flower ArrayRecord (one serialized Array per entry)."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({key: Array(value.detach().cpu().contiguous().numpy()) for key, value in tensors.items()})


def from_record(record: Any) -> dict[str, torch.Tensor]:
    """Flower ArrayRecord -> tensors."""
    return {key: torch.from_numpy(array.numpy().copy()) for key, array in record.items()}


def save_state(context: Any, state: dict[str, torch.Tensor]) -> None:
    """The node state -> ``Context.state``: one packed byte Array plus its layout (one serialization per call)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord

    layout, chunks, offset = {}, [], 0
    for key, value in state.items():
        raw = value.detach().cpu().contiguous().numpy().tobytes()
        layout[key] = [str(value.dtype).removeprefix("torch."), list(value.shape), offset, len(raw)]
        chunks.append(raw)
        offset += len(raw)
    context.state["model"] = ArrayRecord({"packed": Array(np.frombuffer(b"".join(chunks), dtype=np.uint8))})
    context.state["layout"] = ConfigRecord({"layout": json.dumps(layout)})


def load_state(context: Any) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_state`."""
    packed = context.state["model"]["packed"].numpy()
    state = {}
    for key, (dtype, shape, offset, size) in json.loads(context.state["layout"]["layout"]).items():
        values = np.frombuffer(packed[offset: offset + size].tobytes(), dtype=np.dtype(dtype))
        state[key] = torch.from_numpy(values.copy()).reshape(shape)
    return state


def outbox_record(outbox: Outbox) -> Any:
    return to_record({f"a{agent}": value for agent, value in outbox.items()})


def _experiment(config_yaml: str) -> Any:
    if config_yaml not in _EXPERIMENTS:
        import yaml

        from surf.config import from_dict
        from surf.families.classifier.family import ClassifierFamily

        raw = yaml.safe_load(config_yaml)
        raw["device"], raw["threads"] = "cpu", 1
        _EXPERIMENTS[config_yaml] = ClassifierFamily(from_dict(raw))
    return _EXPERIMENTS[config_yaml]


def _task(config_yaml: str, experiment: Any, key: tuple[str, int, bool]) -> Any:
    """A full task, built once per process (every shard slices its own rows)."""
    if (config_yaml, key) not in _TASKS:
        if len(_TASKS) >= TASK_CACHE:
            _TASKS.pop(next(iter(_TASKS)))
        split, index, relabel = key
        _TASKS[config_yaml, key] = experiment.task(split, index, relabel=relabel).to("cpu")
    return _TASKS[config_yaml, key]


def _rule(spec: ShardSpec, experiment: Any, theta: dict[str, torch.Tensor] | None) -> Any:
    from surf.runtime.flower.rules import GradientRule, UnrolledRule

    cfg = experiment.cfg
    if spec.method == "surf":
        model = experiment.build_model()
        model.load_state_dict(theta)
        return UnrolledRule(model)
    return GradientRule(spec.step_size, spec.momentum, spec.steps, spec.method == "dsgd", cfg.data.batch_size)


def shard_of(context: Any) -> Shard:
    """The node's shard, rebuilt from ``Context.state`` when this process has not seen it yet."""
    spec = ShardSpec.from_json(context.state["spec"]["spec"])
    key = (spec.uid, tuple(spec.agents))
    if key not in _SHARDS:
        if len(_SHARDS) >= CACHE_SIZE:
            _SHARDS.pop(next(iter(_SHARDS)))
        experiment = _experiment(spec.config_yaml)
        theta = from_record(context.state["theta"]) if "theta" in context.state else None
        rows = from_record(context.state["rows"])["rows"]
        tasks = [_task(spec.config_yaml, experiment, key) for key in spec.tasks]
        _SHARDS[key] = Shard(spec, rows, _rule(spec, experiment, theta), tasks, experiment.cfg.seed,
                             experiment.cfg.model.w0_std)
    return _SHARDS[key]


def _setup(message: Any, context: Any) -> Any:
    from flwr.app import Message, RecordDict

    torch.set_num_threads(1)
    content = message.content
    context.state["spec"] = content["spec"]
    context.state["rows"] = content["rows"]
    if "theta" in content:
        context.state["theta"] = content["theta"]
    elif "theta" in context.state:
        del context.state["theta"]
    state: dict[str, torch.Tensor] = {}
    outbox = shard_of(context).setup(state)
    save_state(context, state)
    return Message(RecordDict({"outbox": outbox_record(outbox)}), reply_to=message)


def _hop(message: Any, context: Any) -> Any:
    from flwr.app import Message, RecordDict

    shard = shard_of(context)
    hop = message.content["hop"]
    num_tasks = len(shard.spec.tasks)
    inbox = {int(key[1:]): value for key, value in from_record(message.content["inbox"]).items()}
    present = {int(key[1:]): torch.tensor(list(flags), dtype=torch.bool)
               for key, flags in message.content["present"].items()}
    inactive = list(hop["inactive"])
    inactive_mask = torch.tensor(inactive, dtype=torch.bool).view(-1, num_tasks) if inactive else None
    state = load_state(context)
    outbox = shard.hop(state, int(hop["layer"]), int(hop["k"]), inbox, present, inactive_mask,
                       set(hop["dropped"]))
    save_state(context, state)
    return Message(RecordDict({"outbox": outbox_record(outbox)}), reply_to=message)


def _report(message: Any, context: Any) -> Any:
    from flwr.app import Message, RecordDict

    state = load_state(context)
    metrics = shard_of(context).finish(state, set(message.content["report"]["dropped"]))
    save_state(context, state)
    return Message(RecordDict({"metrics": to_record(metrics)}), reply_to=message)


def _echo(message: Any, context: Any) -> Any:
    """A bare round: reply an empty message (the benchmark's reference)."""
    from flwr.app import Message, RecordDict

    return Message(RecordDict(), reply_to=message)


def client_app(mods: list | None = None) -> Any:
    """The ClientApp every SuperNode runs; ``mods`` are Flower mods (e.g. fault injection in tests)."""
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=mods or [])
    app.query("setup")(_setup)
    app.train("hop")(_hop)
    app.query("report")(_report)
    app.query("echo")(_echo)
    return app
