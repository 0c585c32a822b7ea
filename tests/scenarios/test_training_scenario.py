"""Robust meta-training: keyed per-task severities in their range, a keyed mixture that applies each of its
scenarios, the one drop model, labels and start-up errors."""

import pytest
import torch

from surf.config import from_dict
from surf.scenarios.drops import dropped_agents
from surf.scenarios.training import TrainingScenario, training_label
from surf.utils.errors import ConfigError
from tests.conftest import make_task, ring_shift


def _scenario(scenario, severity, seed=0):
    cfg = from_dict({"seed": seed, "num_agents": 12, "trainer": {"scenario": scenario, "scenario_severity": severity}})
    return TrainingScenario.from_config(cfg, None)


def _severities(training, keys):
    return [training.draw(key).severity for key in keys]


KEYS = [("train", i) for i in range(60)]


def test_integer_range_is_keyed_and_in_range():
    training = _scenario("fig4_async", [2, 6])
    drawn = _severities(training, KEYS)
    assert all(isinstance(s, int) and 2 <= s <= 6 for s in drawn)
    assert set(drawn) == {2, 3, 4, 5, 6}  # every value of the range occurs over 60 tasks
    assert drawn == _severities(_scenario("fig4_async", [2, 6]), KEYS)  # keyed: a fresh object draws the same
    assert drawn != _severities(_scenario("fig4_async", [2, 6], seed=1), KEYS)  # and by the seed


def test_continuous_range_and_fixed_values():
    drawn = _severities(_scenario("link_loss", [0.1, 0.3]), KEYS)
    assert all(0.1 <= s <= 0.3 for s in drawn) and len(set(drawn)) == len(drawn)
    assert set(_severities(_scenario("fig4_async", 4), KEYS)) == {4}
    assert set(_severities(_scenario("fig4_async", None), KEYS)) == {5}  # the scenario's representative


def test_mixture_applies_each_scenario_and_the_one_drop_model():
    training = _scenario(["fig4_async", "link_loss"], [[1, 4], [0.5, 0.5]])
    shift = ring_shift(12)
    kinds = set()
    for index in range(40):
        task = make_task(key=("train", index))
        bound = training.draw(task.key)
        kinds.add(bound.scenario.name)
        _, schedule, mode = training.apply(task, shift)
        assert mode == "stale"
        if bound.scenario.name == "fig4_async":
            for step in (1, 2, 3):
                expected = ~dropped_agents(12, bound.severity, 0, task.key, step)
                assert torch.equal(schedule(step).active, expected)
        else:
            assert schedule(1).active is None and not torch.equal(schedule(1).shift.to_dense(), shift)
    assert kinds == {"fig4_async", "link_loss"}


def test_zero_mode_member_and_labels():
    training = _scenario(["fig4_async_zero"], [[0, 3]])
    _, _, mode = training.apply(make_task(), ring_shift(12))
    assert mode == "zero"
    cfg = from_dict({"trainer": {"scenario": ["fig4_async", "link_loss"],
                                 "scenario_severity": [[0, 10], 0.2]}})
    assert training_label(cfg.trainer) == "fig4_async@0..10+link_loss@0.2"
    assert training_label(from_dict({}).trainer) == "clean"
    assert training_label(from_dict({"trainer": {"scenario": "bernoulli"}}).trainer) == "bernoulli"


def test_bad_severities_fail_at_start_up():
    with pytest.raises(ConfigError, match="expected int"):
        _scenario("fig4_async", [0.0, 10.0])  # a continuous range for a count: an interior value is not an integer
    with pytest.raises(ConfigError, match="changes the config"):
        _scenario("dirichlet", None)
    assert _scenario(None, None) is None
