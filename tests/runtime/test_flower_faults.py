"""The relay's node-local path and its faults, with every node an in-process ClientApp holding its own data file.

``LocalGrid`` stands in for a SuperLink: messages go to ClientApps with their own ``Context`` (node config
``data=node_<s>.npz``), a killed node stops answering (the relay times out), and a node started later registers under
a new id, as a restarted SuperNode does. The real processes are exercised by ``test_flower_deployment.py``; here the
semantics are checked fast and exactly: the models equal the vectorized engine's when nothing fails, a node's process
only ever holds its own agents' rows, and a killed node's agents are frozen from the round it died, then resume with
their last state, stay out, or go unreported.
"""

import uuid

import pytest
import torch
from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.supercore.task_identity import TaskIdentity

from surf.config import from_dict, to_dict
from surf.data.shares import Share, split_agents
from surf.families.classifier.family import ClassifierFamily
from surf.runtime.flower.client import client_app
from surf.runtime.flower.deploy import deploy_jobs
from surf.runtime.flower.partition import fingerprint, write_partition
from surf.runtime.flower.relay import Relay

N, NODES, LAYERS, HOPS, KILLED = 10, 4, 4, 2, 1


class LocalGrid:
    """A SuperLink stand-in: nodes are ClientApps in this process; replies are computed when a message is pushed."""

    def __init__(self, files, kill_at=None, restart=False):
        self.app, self.contexts, self.replies, self.dead = client_app(), {}, {}, set()
        self.files, self.kill_at, self.restart = files, kill_at, restart
        for path in files:
            self.start(path)

    def start(self, path):
        node = 1000 + len(self.contexts)
        self.contexts[node] = Context(run_id=1, node_id=node, node_config={"data": str(path)}, state=RecordDict(),
                                      run_config={})
        return node

    def get_node_ids(self):
        return [node for node in self.contexts if node not in self.dead]

    def push_messages(self, messages):
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            ids.append(message.metadata.message_id)
            node = message.metadata.dst_node_id
            if self.kill_at and message.metadata.message_type == "train.hop" and node == self.kill_at[0] and \
                    message.content["hop"]["layer"] == self.kill_at[1]:
                self.dead.add(node)  # SIGKILL: it never answers again
                self.kill_at = None
                if self.restart:  # with its own data file, or the one given
                    self.start(self.files[KILLED] if self.restart is True else self.restart)
            if node in self.dead:
                continue
            try:
                self.replies[message.metadata.message_id] = self.app(message, self.contexts[node])
            except Exception as exc:  # noqa: BLE001 - what a SuperNode turns into an error reply
                self.replies[message.metadata.message_id] = Message(Error(2, str(exc)), reply_to=message)
        return ids

    def pull_messages(self, ids):
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    cfg = from_dict({"seed": 3, "num_agents": N, "threads": 1, "device": "cpu", "topology": {"name": "small_world"},
                     "data": {"source": "gaussian", "gaussian_dim": 5, "gaussian_classes": 3, "gaussian_samples": 1500,
                              "train_per_agent": 10, "test_per_agent": 4, "batch_size": 3},
                     "model": {"layers": LAYERS, "hops": HOPS, "w0_std": 0.5, "hidden": 6}})
    exp = ClassifierFamily(cfg)
    model = exp.build_model()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    files = write_partition(exp, NODES, 1, tmp_path_factory.mktemp("partition"))
    return exp, model, files


def relay(setup, kill_at=None, restart=False, rejoin="resume", grid=None):
    exp, model, files = setup
    grid = grid or LocalGrid(files, kill_at, restart)
    placement = {s: 1000 + s for s in range(NODES)}
    jobs, _ = deploy_jobs(exp, model, NODES, 1, 0.3, (), prime=True, rejoin=rejoin, keep_history=True)
    return Relay(grid, [], jobs[0], placement, fingerprint=fingerprint(exp, NODES)).run()


def engine(setup):
    exp, model, _ = setup
    out = []
    for relabel in (False, True):
        task = exp.task("test", 0, relabel=relabel)
        with torch.no_grad():
            out.append(torch.stack(model(task, exp.shift_for(task), exp.cfg.seed).weights))
    return torch.stack(out, dim=2)  # (L+1, N, T, d+1, C)


def test_node_files_hold_only_their_agents(setup):
    _, _, files = setup
    shards = split_agents(N, NODES)
    for path, agents in zip(files, shards, strict=True):
        share = Share.load(path)
        assert share.agents.tolist() == agents and share.x_train.shape[1] == len(agents) < N
        assert share.rows.shape == (len(agents), len(share.columns))


def test_node_local_relay_equals_the_engine(setup):
    result = relay(setup)
    assert (result.history - engine(setup)).abs().max().item() < 1e-5
    assert result.faults == [] and result.unreported == []
    for audit, agents in zip(result.audit, split_agents(N, NODES), strict=True):  # the shapes each node held
        assert audit["source"].endswith(f"node_{audit['node']}.npz") and audit["agents"] == len(agents)
        assert f'"x_train": [{len(agents)}, 10, 6]' in audit["shapes"]


def test_killed_node_rejoins_with_its_last_state(setup):
    result = relay(setup, kill_at=(1000 + KILLED, 2), restart=True)
    agents = split_agents(N, NODES)[KILLED]
    assert [(f["event"], f["node"], f["step"]) for f in result.faults] == [("out", KILLED, 2), ("rejoined", KILLED, 3)]
    history = result.history
    assert torch.equal(history[2, agents], history[1, agents])  # sat step 2 out: kept its model
    assert not torch.equal(history[3, agents], history[2, agents])  # back at step 3
    assert (history[1] - engine(setup)[1]).abs().max().item() < 1e-5  # before the fault: the engine's
    assert result.unreported == [] and torch.isfinite(result.accuracy).all()


def test_a_node_back_with_another_runs_data_is_refused(setup, tmp_path):
    """The same agents cut from another run (another seed): admitting it would mix two runs' data in one model."""
    exp, _, _ = setup
    other = ClassifierFamily(from_dict({**to_dict(exp.cfg), "seed": 4}))
    wrong = write_partition(other, NODES, 1, tmp_path)[KILLED]
    result = relay(setup, kill_at=(1000 + KILLED, 2), restart=wrong)
    assert [(f["event"], f["node"], f["step"]) for f in result.faults] == [("out", KILLED, 2),
                                                                          ("rejoin refused", KILLED, 3)]
    assert "another run or split" in result.faults[1]["reason"]
    assert result.unreported == split_agents(N, NODES)[KILLED]


def test_killed_node_kept_out_reports_its_frozen_models(setup):
    result = relay(setup, kill_at=(1000 + KILLED, 2), restart=True, rejoin="out")
    agents = split_agents(N, NODES)[KILLED]
    assert [f["event"] for f in result.faults] == ["out", "kept out"]
    for layer in range(2, LAYERS + 1):
        assert torch.equal(result.history[layer, agents], result.history[1, agents])
    assert result.unreported == []


def test_node_that_never_comes_back_goes_unreported(setup):
    result = relay(setup, kill_at=(1000 + KILLED, 3))
    assert result.unreported == split_agents(N, NODES)[KILLED]
    assert result.history.shape[1] == N - len(result.unreported)
    assert torch.isfinite(result.accuracy).all() and result.faults[0]["step"] == 3


def test_node_state_between_steps_keeps_no_hop_buffers(setup):
    """The Context travels with every ClientApp call: a node keeps z and the filter sum only within a step."""
    from surf.runtime.flower.client import load_state

    grid = LocalGrid(setup[2])
    relay(setup, grid=grid)
    for context in grid.contexts.values():
        state = load_state(context)
        assert {"w", "delta", "accuracy"} <= set(state) and not {"z", "out"} & set(state)
