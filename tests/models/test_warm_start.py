"""The heavy-ball start: the untrained model *is* heavy-ball DGD (clean and under drops), its K-hop analogue for
K > 1, and the classical start saved with the model (also read from checkpoints that predate it)."""

import pytest
import torch

from surf.baselines.dgd import run_dgd
from surf.config import ModelConfig
from surf.data.batches import initial_weights
from surf.graphs.gso import shift_power
from surf.graphs.network import masks_schedule
from surf.models.udgd import UnrolledDGD
from surf.problems.softmax import agent_accuracies
from surf.scenarios.drops import dropped_agents

STEP, MOMENTUM = 0.7, 0.6


def _started(layers=20, hops=1, **kw):
    cfg = ModelConfig(layers=layers, hops=hops, w0_std=0.5, hidden=8, local_gradient="full", **kw)
    model = UnrolledDGD(cfg, 6, 4, 5)
    with torch.no_grad():  # a model far from any start: the warm start must overwrite all of it
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.start_from_heavy_ball(STEP, MOMENTUM)
    return model


def _heavy_ball(task, shift, rounds, schedule=None, mode="stale"):
    w0 = initial_weights(task, 0, 0.5)
    return run_dgd(task, shift, w0, rounds, torch.tensor([STEP]), torch.tensor([MOMENTUM]), schedule=schedule,
                   async_mode=mode)


def test_untrained_warm_started_model_is_heavy_ball_dgd(task, shift):
    """L = 20, K = 1: W_L and the per-round held-out accuracy equal run_dgd with the same (alpha, beta)."""
    model = _started()
    with torch.no_grad():
        trajectory = model(task, shift, 0)
    reference = _heavy_ball(task, shift, 20)
    assert (trajectory.weights[-1] - reference.final[0]).abs().max().item() < 1e-5
    accuracy = agent_accuracies(torch.stack(trajectory.weights), task.x_test, task.y_test).mean(-1)
    assert torch.allclose(accuracy, reference.accuracy[0], atol=1e-6)
    assert model.classical_start.tolist() == pytest.approx([STEP, MOMENTUM])


@pytest.mark.parametrize("mode", ["stale", "zero"])
def test_warm_started_model_is_heavy_ball_under_drops(task, shift, mode):
    """Dropped agents keep their whole state (W and the momentum input) in both, so they still agree."""
    masks = [~dropped_agents(task.num_agents, 3, 0, task.key, t) for t in range(1, 21)]
    with torch.no_grad():
        trajectory = _started()(task, shift, 0, masks_schedule(masks), mode)
    reference = _heavy_ball(task, shift, 20, masks_schedule(masks), mode)
    assert (trajectory.weights[-1] - reference.final[0]).abs().max().item() < 1e-5


def test_k_hop_start_is_multi_consensus_heavy_ball(task, shift):
    """K = 2: taps (0, 0, 1), every layer one heavy-ball step after two rounds of plain S mixing (S^2)."""
    model = _started(layers=10, hops=2)
    assert model.taps[:, :2].abs().max().item() == 0.0 and (model.taps[:, 2] == 1.0).all()
    with torch.no_grad():
        w_last = model(task, shift, 0).weights[-1]
    reference = _heavy_ball(task, shift_power(shift, 2), 10)
    assert (w_last - reference.final[0]).abs().max().item() < 1e-5


def test_classical_start_is_saved_and_old_checkpoints_still_load():
    model = _started(layers=3)
    fresh = UnrolledDGD(ModelConfig(layers=3, hops=1, hidden=8, step_init=0.3, momentum_init=0.1), 6, 4, 5)
    assert fresh.classical_start.tolist() == pytest.approx([0.3, 0.1])
    fresh.load_state_dict(model.state_dict())
    assert fresh.classical_start.tolist() == pytest.approx([STEP, MOMENTUM])
    old = {k: v for k, v in model.state_dict().items() if k != "classical_start"}  # written before the buffer
    again = UnrolledDGD(ModelConfig(layers=3, hops=1, hidden=8), 6, 4, 5)
    again.load_state_dict(old)
    assert again.classical_start.tolist() == pytest.approx([0.3, 0.0])
    assert torch.equal(again.taps, model.taps)


def test_heavy_ball_start_needs_the_compact_model():
    paper = UnrolledDGD(ModelConfig(layers=2, hops=1, variant="paper"), 6, 4, 5)
    with pytest.raises(ValueError, match="compact"):
        paper.start_from_heavy_ball(1.0, 0.5)
