"""Experiment wiring: per-task graphs are keyed by the task and built once."""

import torch

from surf import config as config_mod
from surf.families.classifier.family import ClassifierFamily


def test_per_task_graph_is_keyed_and_reused():
    cfg = config_mod.from_dict({}, ["num_agents=12", "topology.name=erdos_renyi",
                                    "topology.params={p: 0.5, connected: true}", "topology.resample_per_task=true"])
    exp = ClassifierFamily(cfg)
    a, twin, b = exp.task("test", 0), exp.task("test", 0, relabel=True), exp.task("test", 1)
    assert exp.shift_for(a) is exp.shift_for(twin)  # same key: built once, shared by the relabelled twin
    assert not torch.equal(exp.shift_for(a).to_dense(), exp.shift_for(b).to_dense())


def test_fixed_graph_is_shared_by_all_tasks():
    exp = ClassifierFamily(config_mod.from_dict({}, ["num_agents=12", "topology.name=ring"]))
    assert exp.shift_for(exp.task("train", 0)) is exp.shift_for(exp.task("test", 3))
