"""The run-time safeguard (``model.safeguard: loss``): per agent the update with the lower local loss, a no-op on the
untrained heavy-ball start, applied by the model's forward and local step (every runtime) but never in meta-training.
"""

import torch

from surf.config import ModelConfig
from surf.graphs.network import Network, masks_schedule
from surf.models.safeguard import loss_guard
from surf.models.udgd import UnrolledDGD
from surf.problems.softmax import agent_gradients, agent_losses
from surf.scenarios.drops import dropped_agents

STEP, MOMENTUM = 0.7, 0.6


def _model(safeguard="loss", trained=True, layers=6):
    cfg = ModelConfig(layers=layers, hops=1, w0_std=0.5, hidden=8, local_gradient="full", safeguard=safeguard)
    torch.manual_seed(0)  # the MLP's first layer is drawn from the global generator
    model = UnrolledDGD(cfg, 6, 4, 5)
    model.start_from_heavy_ball(STEP, MOMENTUM)
    if trained:  # a learned correction far from zero: some agents' learned steps are worse than heavy-ball's
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for layer in model.steps:
                layer.mlp[2].weight.copy_(0.3 * torch.randn(layer.mlp[2].weight.shape, generator=gen))
    return model


def test_loss_guard_keeps_the_update_with_the_lower_local_loss(task):
    gen = torch.Generator().manual_seed(0)
    shape = (task.num_agents, 6, 4)
    filtered, learned, classical = (torch.randn(shape, generator=gen) for _ in range(3))
    guarded, fallback = loss_guard(learned, classical, filtered, task.x_train, task.y_train)
    f_learned = agent_losses(filtered - learned, task.x_train, task.y_train)
    f_classical = agent_losses(filtered - classical, task.x_train, task.y_train)
    assert torch.equal(fallback, f_learned > f_classical) and 0 < fallback.sum() < task.num_agents
    assert torch.equal(guarded[fallback], classical[fallback]) and torch.equal(guarded[~fallback], learned[~fallback])
    after = agent_losses(filtered - guarded, task.x_train, task.y_train)
    assert torch.equal(after, torch.minimum(f_learned, f_classical))


def test_local_step_falls_back_to_the_classical_heavy_ball_step(task):
    """The guarded update is the classical alpha g - beta delta (the model's classical start) where the agent fell
    back and the learned one elsewhere; every agent's loss is the lower of the two."""
    model = _model()
    gen = torch.Generator().manual_seed(2)
    w, delta, filtered = (torch.randn(task.num_agents, 6, 4, generator=gen) for _ in range(3))
    idx = torch.zeros(task.num_agents, 5, dtype=torch.long)
    with torch.no_grad():
        model.steps[0].step.fill_(-STEP)  # a learned step that climbs: worse than heavy-ball for most agents
        learned, _, none = model.local_step(0, w, delta, filtered, task.x_train, task.y_train, idx, safeguard=False)
        guarded, _, fallback = model.local_step(0, w, delta, filtered, task.x_train, task.y_train, idx)
    classical = STEP * agent_gradients(w, task.x_train, task.y_train) - MOMENTUM * delta
    assert none is None and fallback.sum() >= task.num_agents // 2
    assert torch.allclose(guarded[fallback], classical[fallback], atol=1e-6)
    assert torch.equal(guarded[~fallback], learned[~fallback])
    after = agent_losses(filtered - guarded, task.x_train, task.y_train)
    best = torch.minimum(*(agent_losses(filtered - u, task.x_train, task.y_train) for u in (learned, classical)))
    assert torch.allclose(after, best)


def test_guard_is_a_no_op_on_the_untrained_heavy_ball_start(task, shift):
    with torch.no_grad():
        plain = _model("none", trained=False)(task, shift, 0)
        guarded = _model(trained=False)(task, shift, 0)
    assert all(torch.equal(a, b) for a, b in zip(plain.weights, guarded.weights, strict=True))
    assert not plain.fallbacks and not torch.stack(guarded.fallbacks).any()


def test_every_guarded_layer_ends_at_the_lower_local_loss(task, shift):
    """Replayed layer by layer from the guarded trajectory's own states: W_l is the filter output minus the guarded
    update, and every agent's loss is at most the classical step's from the same state."""
    model = _model()
    with torch.no_grad():
        trajectory = model(task, shift, 0)
        network, delta = Network(shift), torch.zeros_like(trajectory.weights[0])
        for layer, (w, new) in enumerate(zip(trajectory.weights[:-1], trajectory.weights[1:], strict=True)):
            filtered = network.step(layer + 1).filter(w, model.taps[layer])
            classical = filtered - (STEP * agent_gradients(w, task.x_train, task.y_train) - MOMENTUM * delta)
            assert torch.allclose(new[trajectory.fallbacks[layer]], classical[trajectory.fallbacks[layer]], atol=1e-5)
            assert (agent_losses(new, task.x_train, task.y_train)
                    <= agent_losses(classical, task.x_train, task.y_train) + 1e-6).all()
            delta = new - w
    fallbacks = torch.stack(trajectory.fallbacks)
    assert fallbacks.any() and not fallbacks.all()


def test_dropped_agents_never_fall_back_and_the_switch_turns_it_off(task, shift):
    model = _model()
    masks = [~dropped_agents(task.num_agents, 3, 0, task.key, t) for t in range(1, 7)]
    with torch.no_grad():
        trajectory = model(task, shift, 0, masks_schedule(masks))
        unguarded = model(task, shift, 0, masks_schedule(masks), safeguard=False)
    assert len(trajectory.fallbacks) == 6 and torch.stack(trajectory.fallbacks).any()
    assert all(not fallback[~mask].any() for fallback, mask in zip(trajectory.fallbacks, masks, strict=True))
    assert not unguarded.fallbacks
