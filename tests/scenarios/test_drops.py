"""The one drop model: keyed, nested across counts, shared by eval, stress and every method."""

import torch

from surf.scenarios.drops import dropped_agents
from surf.scenarios.perturbations import AsyncAgents, Context
from surf.scenarios.scenario import dropped_agents_scenario, load_scenario


def test_dropped_agents_are_keyed_and_counted():
    a = dropped_agents(50, 7, 0, ("test", 1), 3)
    assert a.sum() == 7
    assert torch.equal(a, dropped_agents(50, 7, 0, ("test", 1), 3))
    assert not torch.equal(a, dropped_agents(50, 7, 0, ("test", 1), 4))
    assert not torch.equal(a, dropped_agents(50, 7, 0, ("test", 1), 3, repetition=1))
    assert not dropped_agents(5, 4, 0, ("k",), 1, protect=0)[0]
    assert not dropped_agents(5, 0, 0, ("k",), 1).any()


def test_more_drops_only_add_agents():
    few, many = dropped_agents(30, 3, 1, ("val", 2), 5), dropped_agents(30, 9, 1, ("val", 2), 5)
    assert (few & ~many).sum() == 0


def test_eval_scenario_equals_fig4_async_repetition_zero():
    """`surf eval -o eval.n_async=5` and `surf stress --scenario fig4_async --severity 5` (repetition 0) drop the
    same agents at every layer, and both are the drop model itself."""
    task_key = ("test", 3)
    shift = torch.eye(20).to_sparse_csr()
    ctx = Context(0, task_key, 0, 20)
    from_eval = dropped_agents_scenario(5, "stale").schedule(ctx, shift)
    from_stress = load_scenario("fig4_async").bind(5).schedule(ctx, shift)
    for step in range(1, 11):
        assert torch.equal(from_eval(step).active, from_stress(step).active)
        assert torch.equal(~from_eval(step).active, dropped_agents(20, 5, 0, task_key, step))
    assert AsyncAgents(5).active(ctx, 4, {}).sum() == 15
