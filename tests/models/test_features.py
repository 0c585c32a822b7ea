"""The compact step's extra features: their recursions, that the untrained model ignores them, that they reach the
MLP, their message cost, and finite meta-gradients."""

import pytest
import torch

from surf.config import ModelConfig
from surf.graphs.comm import unrolled_cost
from surf.graphs.network import Network, NetworkStep
from surf.models.features import extra_vectors, initial_state, layer_features
from surf.models.udgd import UnrolledDGD

ALL = ["tracking", "neighbor_gradient", "adam", "catch_up"]


def _model(features, **kw):
    cfg = ModelConfig(layers=4, hops=1, w0_std=0.5, hidden=8, local_gradient="full", features=features, **kw)
    torch.manual_seed(0)
    return UnrolledDGD(cfg, 6, 4, 5)


def test_tracking_neighbor_gradient_and_adam_recursions(shift):
    """y_1 = g_1, y_2 = S y_1 + g_2 - g_1 (DIGing); S g; g / sqrt(bias-corrected v)."""
    dense = shift.to_dense()
    g1, g2 = torch.randn(12, 6, 4), torch.randn(12, 6, 4)
    step = Network(shift).step(1)
    names = ["tracking", "neighbor_gradient", "adam"]
    state = initial_state(names, g1)
    (y1, n1, a1), state = layer_features(names, state, g1, step, 1, layer=1)
    (y2, n2, a2), state = layer_features(names, state, g2, Network(shift).step(2), 1, layer=2)
    mix = lambda z: (dense @ z.reshape(12, -1)).reshape(z.shape)  # noqa: E731
    assert torch.allclose(y1, g1, atol=1e-6) and torch.allclose(y2, mix(y1) + g2 - g1, atol=1e-5)
    assert torch.allclose(n1, mix(g1), atol=1e-5) and torch.allclose(n2, mix(g2), atol=1e-5)
    v2 = 0.9 * 0.1 * g1 * g1 + 0.1 * g2 * g2
    assert torch.allclose(a1, g1 / (g1.abs() + 1e-8), atol=1e-4)  # one layer: v / (1 - b2) = g^2
    assert torch.allclose(a2, g2 / ((v2 / (1 - 0.81)).sqrt() + 1e-8), atol=1e-4)


def test_catch_up_is_the_gradient_times_the_layers_missed(shift):
    """An agent dropped at layers 1 and 2 comes back at layer 3 with 2 g_3 (its feature at layer 2, g_2, is
    discarded with its step); every other agent's feature is 0. The state is frozen as the engine freezes it."""
    g = torch.randn(12, 6, 4)
    active = torch.ones(12, dtype=torch.bool)
    active[0] = False
    step = NetworkStep(Network(shift), shift, active)
    state = initial_state(["catch_up"], g)
    for layer in (1, 2, 3):
        (value,), new = layer_features(["catch_up"], state, g, None, 1, layer)
        assert torch.equal(value[0], (layer - 1) * g[0]) and not value[1:].any()
        state = {name: step.keep(new_value, state[name]) for name, new_value in new.items()}  # UnrolledDGD.forward


def test_untrained_model_ignores_features_and_trained_one_uses_them(task, shift):
    plain, featured = _model([]), _model(ALL)
    featured.load_state_dict({k: v for k, v in plain.state_dict().items() if "mlp.0" not in k}, strict=False)
    with torch.no_grad():
        a, b = plain(task, shift, 0), featured(task, shift, 0)
        assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.weights, b.weights, strict=True))
        for layer in featured.steps:
            layer.mlp[2].weight.normal_()
        c = featured(task, shift, 0)
    assert not torch.allclose(c.weights[-1], b.weights[-1], atol=1e-4)
    assert featured.steps[0].mlp[0].in_features == 4 + len(ALL)


def test_feature_messages_are_counted():
    assert extra_vectors(ALL) == 2 and extra_vectors(["adam", "catch_up"]) == 0
    assert _model(ALL).vectors_per_message == 3 and _model([]).vectors_per_message == 1
    plain, tracked = unrolled_cost(20, 1, 300, 650).as_dict(), unrolled_cost(20, 1, 300, 650, vectors=2).as_dict()
    assert tracked["bytes"] == 2 * plain["bytes"] and tracked["messages"] == plain["messages"]


@pytest.mark.parametrize("features", [["tracking"], ["neighbor_gradient"], ["adam"], ["catch_up"]])
def test_meta_gradient_is_finite_with_each_feature(task, shift, features):
    """Even where a gradient coordinate is exactly 0 (sqrt at 0 would make the Adam feature's gradient inf)."""
    model = _model(features)
    task.x_train[..., 0] = 0.0  # the first feature's weights get exactly zero gradient
    for layer in model.steps:
        torch.nn.init.normal_(layer.mlp[2].weight, std=0.1)
    model(task, shift, 0).weights[-1].pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_features_pass_through_agent_chunks(task, shift, monkeypatch):
    """The local step runs on chunks of agents (``CHUNK_FLOATS``): the precomputed gradient and features are split
    with them, so chunked and whole steps agree."""
    model = _model(ALL)
    for layer in model.steps:
        torch.nn.init.normal_(layer.mlp[2].weight, std=0.1)
    with torch.no_grad():
        whole = model(task, shift, 0).weights[-1]
        monkeypatch.setattr("surf.models.udgd.CHUNK_FLOATS", 6 * 4 * 8 * 5)  # 5 agents per chunk of 12
        chunked = model(task, shift, 0).weights[-1]
    assert torch.allclose(whole, chunked, atol=1e-6)
