"""The classifier family: per-task graphs keyed by the task and built once; tasks side by side (a TaskBatch on a
block-diagonal graph) give exactly the terms of the tasks unrolled one by one."""

import os

import pytest
import torch

from surf import config as config_mod
from surf.data.tasks import TaskBatch
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


@pytest.mark.parametrize("extra", [
    [],
    ["model.server=true", "model.hops=1", "topology.name=star", "topology.gso=lambda_max"],
    ["constraints.kind=distance", "topology.name=erdos_renyi", "topology.params={p: 0.5, connected: true}",
     "topology.resample_per_task=true"],
    ["trainer.scenario=bernoulli", "trainer.scenario_severity=0.3", "model.local_gradient=full"],
    ["trainer.scenario=time_varying", "trainer.scenario_severity=0.5"],
    # a mixture whose tasks 0..2 draw stale and zero members (unrolled apart, then averaged), the new descent
    # quantities, a warm start's momentum and the extra features (state per agent, messages on their own channels)
    ["trainer.scenario=[fig4_async,fig4_async_zero]", "trainer.scenario_severity=[[1,3],[1,3]]",
     "constraints.kind=energy", "model.momentum_init=0.5", "model.local_gradient=full",
     "model.features=[tracking,neighbor_gradient,adam]"],
    ["constraints.kind=window", "constraints.window_reduce=max", "constraints.gradient_on=full"],
    ["constraints.kind=loss", "model.server=true", "model.hops=1", "topology.name=star"],
])
def test_tasks_side_by_side_equal_the_mean_of_separate_tasks(extra):
    """One unroll of a TaskBatch (block-diagonal graph, concatenated schedules) = each task unrolled alone."""
    cfg = config_mod.from_dict({}, ["num_agents=12", "data.train_per_agent=6", "data.test_per_agent=3",
                                    "data.batch_size=3", "model.layers=3", "model.hops=2", "model.hidden=4"] + extra)
    family = ClassifierFamily(cfg)
    torch.manual_seed(0)
    model = family.build_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    tasks = [family.task("train", i) for i in range(3)]
    (unit,) = family.batch_tasks(tasks)
    together = family.task_terms(model, unit)
    alone = [family.task_terms(model, task) for task in tasks]
    assert together.tasks == 3 and isinstance(unit, TaskBatch)
    for field in ("objective", "slacks", "values"):
        expected = torch.stack([getattr(t, field) for t in alone]).mean(0)
        assert torch.allclose(getattr(together, field), expected, atol=1e-5, rtol=1e-5), field
    for name in ("accuracy", "loss"):
        expected = torch.stack([t.layer_metrics[name] for t in alone]).mean(0)
        assert torch.allclose(together.layer_metrics[name], expected, atol=1e-5), name
    grads = [torch.autograd.grad(t.objective + t.slacks.sum(), list(model.parameters()), allow_unused=True)
             for t in (together, *alone)]
    for g_together, *g_alone in zip(*grads, strict=True):
        if g_together is not None:
            assert torch.allclose(g_together, torch.stack(g_alone).mean(0), atol=1e-4, rtol=1e-4)


def test_batches_stay_within_the_agent_budget():
    family = ClassifierFamily(config_mod.from_dict({}, ["num_agents=1000", "topology.name=ring"]))
    tasks = [family.task("val", i) for i in range(9)]
    units = family.batch_tasks(tasks)
    assert [u.num_tasks for u in units] == [4, 4, 1]


def test_threads_follow_the_largest_per_step_tensor():
    """threads=0: one thread for the compact quickstart, every core for the paper variant's 5130 x 10350 weights."""
    previous = torch.get_num_threads()
    try:
        small = ClassifierFamily(config_mod.from_dict({}, ["threads=0", "num_agents=12", "topology.name=ring"]))
        paper = ClassifierFamily(config_mod.from_dict({}, [
            "threads=0", "num_agents=12", "topology.name=ring", "model.variant=paper", "data.source=gaussian",
            "data.gaussian_dim=512", "data.gaussian_samples=2000"]))
        assert small.threads == 1 and paper.threads == (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(previous)
