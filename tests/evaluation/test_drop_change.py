"""The paired drop-loss split of ``surf eval -o eval.n_async=N``: agents that ran the last layer vs those dropped
at it, over the data-holding agents only."""

import torch

from surf.evaluation.classifier import _drop_change_by_last_layer
from surf.models.udgd import Trajectory


def test_split_sums_and_counts_by_last_layer_over_data_agents():
    change = torch.tensor([9.0, -0.1, -0.2, -0.3, -0.4])  # agent 0 is a star's server: never counted
    trajectory = Trajectory(weights=[], active=[None, torch.tensor([True, True, False, True, False])])
    split = _drop_change_by_last_layer(change, trajectory, agents=torch.arange(1, 5))
    assert torch.allclose(split, torch.tensor([[-0.4, 2.0], [-0.6, 2.0]]))  # ran: agents 1, 3; dropped: 2, 4


def test_nobody_dropped_at_the_last_layer_counts_everyone_as_ran():
    trajectory = Trajectory(weights=[], active=[torch.tensor([False, True, True]), None])
    split = _drop_change_by_last_layer(torch.tensor([-0.5, 0.0, 0.5]), trajectory, agents=None)
    assert torch.allclose(split, torch.tensor([[0.0, 3.0], [0.0, 0.0]]))
