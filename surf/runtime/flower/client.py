"""The SURF ClientApp: a Flower node hosting a shard of agents (``query.hello``, ``query.setup``, ``train.hop``,
``query.rejoin``, ``query.report``, ``query.echo``).

The node's mutable state (models, previous updates, stale buffers, per-layer metrics) lives in Flower's
``Context.state`` as one packed byte ``Array``; the setup message (spec, rows of S, the broadcast parameters Theta)
is kept there too, so any process can rebuild the node. Where its data comes from:

* on a real deployment the SuperNode's node config names its data file (``data="DIR/node_3.npz"``, written by
  ``surf partition``): the node loads its agents' share and its rows of S from it and never builds a full task. It
  also keeps its state on its own disk next to that file (written atomically after every message), so that a
  SuperNode restarted after a crash can rejoin with its last state (``query.rejoin``);
* in the simulation every node cuts its agents' share out of the keyed task sampler of the config (all runtimes see
  the same tasks; each process builds a task once).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from surf.runtime.flower.node import Outbox, Shard, ShardSpec
from surf.runtime.flower.wire import (
    flags_from_bytes,
    from_record,
    inbox,
    outbox_records,
    packed_record,
    to_record,
    unpack,
)

_SHARDS: dict[str, Shard] = {}
_CACHE: dict[tuple, Any] = {}  # parsed configs, task samplers, full tasks (simulation), node data files
CACHE_SIZE = 4096  # shards kept per process (one per node and job)
TASK_CACHE = 256  # full tasks kept per process (simulation)


def save_state(context: Any, state: dict[str, torch.Tensor]) -> None:
    """The node state -> ``Context.state`` and, on a deployment, the node's own disk (atomically)."""
    context.state["model"] = packed_record(state)
    path = _state_file(context)
    if path is not None:
        from surf.utils.io import atomic_write

        atomic_write(path, context.state["model"]["packed"].data)


def load_state(context: Any) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_state`."""
    return unpack(context.state["model"]["packed"].data)


def _state_file(context: Any) -> Path | None:
    """Where a deployed node keeps its state of the current job (next to its data file); None in the simulation."""
    data = context.node_config.get("data")
    if not data or "spec" not in context.state:
        return None
    return Path(str(data) + f".{ShardSpec.from_json(context.state['spec']['spec']).uid}.state")


def _cached(key: tuple, build: Any, limit: int = TASK_CACHE) -> Any:
    if key not in _CACHE:
        if len(_CACHE) >= limit:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build()
    return _CACHE[key]


def _config(config_yaml: str) -> Any:
    def build() -> Any:
        import yaml

        from surf.config import from_dict

        raw = yaml.safe_load(config_yaml)
        raw["device"], raw["threads"] = "cpu", 1
        return from_dict(raw)

    return _cached(("config", config_yaml), build)


def _share(path: str) -> Any:
    from surf.data.shares import Share

    return _cached(("share", path), lambda: Share.load(path))


def node_data(spec: ShardSpec, context: Any, rows: torch.Tensor | None) -> tuple[list, torch.Tensor, str]:
    """The node's share of the spec's tasks, its rows of S and where they came from."""
    data = context.node_config.get("data")
    if data:
        share = _share(str(data))
        if share.agents.tolist() != spec.agents or share.columns.tolist() != spec.columns:
            raise ValueError(f"node data file {data} holds agents {share.agents.tolist()[:4]}..., not the shard the "
                             "relay assigned")
        return [share.task(split, index, relabel) for split, index, relabel in spec.tasks], share.rows, str(data)

    def full(key: tuple) -> Any:
        def build() -> Any:
            from surf.families.classifier.family import ClassifierFamily

            sampler = _cached(("family", spec.config_yaml), lambda: ClassifierFamily(_config(spec.config_yaml)))
            return sampler.task(key[0], key[1], relabel=key[2]).to("cpu")

        return _cached(("task", spec.config_yaml, key), build)

    agents = torch.tensor(spec.agents)
    return [full(key).select(agents) for key in spec.tasks], rows, "task sampler"


def _rule(spec: ShardSpec, cfg: Any, tasks: list, theta: bytes | None) -> Any:
    """The shard's rule; a SURF model is built once per process and job (its packed parameters ``theta``) and
    shared by every shard of it: it keeps no state between calls (building 100 copies took 1.1 s per process)."""
    from surf.runtime.flower.rules import GradientRule, UnrolledRule

    if spec.method == "surf":
        from surf.models.udgd import UnrolledDGD

        features, classes = tasks[0].x_train.shape[-1], tasks[0].num_classes

        def build() -> UnrolledRule:
            model = UnrolledDGD(cfg.model, features, classes, cfg.data.batch_size)
            model.load_state_dict(unpack(theta))
            return UnrolledRule(model)

        return _cached(("rule", spec.config_yaml, hashlib.sha1(theta).hexdigest(), features, classes), build)
    return GradientRule(spec.step_size, spec.momentum, spec.steps, spec.method == "dsgd", cfg.data.batch_size)


def shard_of(context: Any) -> Shard:
    """The node's shard, rebuilt from ``Context.state`` when this process has not seen it yet (cached by its spec,
    which names the relay run and the agents)."""
    key = context.state["spec"]["spec"]
    if key not in _SHARDS:
        spec = ShardSpec.from_json(key)
        if len(_SHARDS) >= CACHE_SIZE:
            _SHARDS.pop(next(iter(_SHARDS)))
        cfg = _config(spec.config_yaml)
        theta = context.state["theta"]["packed"].data if "theta" in context.state else None
        rows = from_record(context.state["rows"])["rows"] if "rows" in context.state else None
        tasks, rows, source = node_data(spec, context, rows)
        _SHARDS[key] = Shard(spec, rows, _rule(spec, cfg, tasks, theta), tasks, cfg.seed, cfg.model.w0_std, source)
    return _SHARDS[key]


def _reply(message: Any, outbox: Outbox) -> Any:
    from flwr.app import Message, RecordDict

    rows, layout = outbox_records(outbox)
    return Message(RecordDict({"outbox": rows, "layout": layout}), reply_to=message)


def _hello(message: Any, context: Any) -> Any:
    """Which agents this node holds (from its data file) and the run they were cut from."""
    from flwr.app import ConfigRecord, Message, RecordDict

    data = context.node_config.get("data")
    share = _share(str(data)) if data else None
    content = {"agents": share.agents.tolist() if share else [], "fingerprint": share.fingerprint if share else ""}
    return Message(RecordDict({"share": ConfigRecord(content)}), reply_to=message)


def _store_setup(content: Any, context: Any) -> None:
    for key in ("spec", "rows", "theta"):
        if key in content:
            context.state[key] = content[key]
        elif key in context.state:
            del context.state[key]


def _setup(message: Any, context: Any) -> Any:
    torch.set_num_threads(1)
    _store_setup(message.content, context)
    state: dict[str, torch.Tensor] = {}
    shard = shard_of(context)
    with torch.inference_mode():
        outbox = shard.setup(state, flags_from_bytes(message.content["hop"]["quiet"], len(shard.spec.agents)))
        save_state(context, state)
        return _reply(message, outbox)


def _rejoin(message: Any, context: Any) -> Any:
    """A restarted SuperNode takes its shard back with the last state it wrote to its own disk."""
    from flwr.app import ConfigRecord, Message, RecordDict

    torch.set_num_threads(1)
    _store_setup(message.content, context)
    path = _state_file(context)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"no saved state {path} to rejoin with")
    state = unpack(path.read_bytes())
    save_state(context, state)
    return Message(RecordDict({"rejoined": ConfigRecord({"recorded": int(state["recorded"])})}), reply_to=message)


def _hop(message: Any, context: Any) -> Any:
    shard = shard_of(context)
    hop, own = message.content["hop"], len(shard.spec.agents)
    with torch.inference_mode():  # no autograd bookkeeping on the node's ~250 small ops (about 10 % of a call)
        state = load_state(context)
        outbox = shard.hop(state, int(hop["layer"]), int(hop["k"]),
                           inbox(message.content, tuple(state["w"].shape[1:])), flags_from_bytes(hop["inactive"], own),
                           flags_from_bytes(hop["quiet"], own), set(hop["lost"]))
        save_state(context, state)
        return _reply(message, outbox)


def _report(message: Any, context: Any) -> Any:
    from flwr.app import ConfigRecord, Message, RecordDict

    shard = shard_of(context)
    with torch.inference_mode():
        state = load_state(context)
        metrics = shard.finish(state, set(message.content["report"]["lost"]))
        save_state(context, state)
    task = shard.tasks[0]
    audit = {"source": shard.source, "agents": len(shard.spec.agents),
             "shapes": json.dumps({name: list(getattr(task, name).shape)
                                   for name in ("x_train", "y_train", "x_test", "y_test")})}
    return Message(RecordDict({"metrics": to_record(metrics), "audit": ConfigRecord(audit)}), reply_to=message)


def _echo(message: Any, context: Any) -> Any:
    """A bare round: reply an empty message (the benchmark's reference)."""
    from flwr.app import Message, RecordDict

    return Message(RecordDict(), reply_to=message)


def client_app(mods: list | None = None) -> Any:
    """The ClientApp every SuperNode runs; ``mods`` are Flower mods (e.g. fault injection in tests)."""
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=mods or [])
    app.query("hello")(_hello)
    app.query("setup")(_setup)
    app.query("rejoin")(_rejoin)
    app.train("hop")(_hop)
    app.query("report")(_report)
    app.query("echo")(_echo)
    return app
