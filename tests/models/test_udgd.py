"""U-DGD layers: equations, label-blindness, dropped agents, star/server mode, keyed randomness."""

import torch

from surf.config import ModelConfig
from surf.data.batches import batch_indices, gather_batch, initial_weights
from surf.graphs.filter import GraphFilter
from surf.graphs.network import masks_schedule
from surf.models.udgd import UnrolledDGD
from surf.problems.softmax import agent_gradients, agent_losses
from tests.conftest import make_task


def _model(**kw):
    cfg = ModelConfig(**{"layers": 3, "hops": 2, "w0_std": 0.5, "hidden": 8, **kw})
    return UnrolledDGD(cfg, 6, 4, 5)


def test_untrained_compact_layer_is_dgd(task, shift):
    """MLP output starts at zero and momentum at 0: layer 1 = S W_0 - alpha grad f(W_0; B_1)."""
    model = _model(step_init=0.7)
    traj = model(task, shift, seed=3)
    w0 = initial_weights(task, 3, 0.5)
    xb, yb = gather_batch(task.x_train, task.y_train, batch_indices(task, 3, 1, 5))
    expected = GraphFilter()(w0, shift, torch.tensor([0.0, 1.0, 0.0])) - 0.7 * agent_gradients(w0, xb, yb)
    assert torch.allclose(traj.weights[0], w0)
    assert torch.allclose(traj.weights[1], expected, atol=1e-6)


def test_full_local_gradient_option(task, shift):
    model = _model(step_init=0.7, local_gradient="full")
    w0 = initial_weights(task, 0, 0.5)
    expected = GraphFilter()(w0, shift, torch.tensor([0.0, 1.0, 0.0])) - 0.7 * agent_gradients(
        w0, task.x_train, task.y_train)
    assert torch.allclose(model(task, shift, 0).weights[1], expected, atol=1e-6)


def test_compact_model_is_label_blind(task, shift):
    """With W_0 = 0, relabelling the classes permutes the columns of every W_l and nothing else."""
    model = _model(w0_std=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    perm = torch.tensor([2, 0, 3, 1])
    relabelled = make_task()
    relabelled.y_train, relabelled.y_test = perm[task.y_train], perm[task.y_test]
    a, b = model(task, shift, 0), model(relabelled, shift, 0)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        assert torch.allclose(wa, wb[..., perm], atol=1e-5)  # new class perm[c] holds old column c


def test_compact_size_independent_of_problem_size():
    small = UnrolledDGD(ModelConfig(layers=2), 6, 4, 5)
    large = UnrolledDGD(ModelConfig(layers=2), 513, 10, 50)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in large.parameters())


def test_paper_variant_shapes_and_gradients(task, shift):
    model = _model(variant="paper", batchnorm=True, dropout=0.5)
    assert model.steps[0].linear.in_features == 6 * 4 + 5 * (5 + 4)
    traj = model(task, shift, 0)
    traj.weights[-1].sum().backward()
    assert model.steps[0].linear.weight.grad is not None and torch.isfinite(model.taps.grad).all()


def test_dropped_agents_keep_their_model_and_records_are_intact(task, shift):
    model = _model()
    active = [torch.ones(12, dtype=torch.bool) for _ in range(3)]
    active[1][[2, 7]] = False
    traj = model(task, shift, 0, masks_schedule(active), "stale")
    assert torch.equal(traj.weights[2][[2, 7]], traj.weights[1][[2, 7]])
    assert not torch.equal(traj.weights[2][[0, 1]], traj.weights[1][[0, 1]])
    again = model(task, shift, 0, masks_schedule(active), "stale")  # recorded outputs are not altered in place
    assert all(torch.equal(x, y) for x, y in zip(traj.weights, again.weights, strict=True))


def test_stale_and_zero_semantics_differ(task, shift):
    model = _model()
    active = [torch.ones(12, dtype=torch.bool) for _ in range(3)]
    active[1][3] = False
    stale = model(task, shift, 0, masks_schedule(active), "stale").weights[2]
    zero = model(task, shift, 0, masks_schedule(active), "zero").weights[2]
    neighbours = [2, 4]
    assert not torch.allclose(stale[neighbours], zero[neighbours])
    far = [8, 9]  # outside the 2-hop neighbourhood of agent 3
    assert torch.allclose(stale[far], zero[far])


def test_no_drops_equals_plain_run(task, shift):
    model = _model()
    active = [torch.ones(12, dtype=torch.bool) for _ in range(3)]
    for mode in ("stale", "zero"):
        with_mask = model(task, shift, 0, masks_schedule(active), mode).weights
        plain = model(task, shift, 0).weights
        assert all(torch.equal(x, y) for x, y in zip(with_mask, plain, strict=True))


def test_server_mode_follows_eq13(task):
    n = 12
    star = torch.zeros(n, n)
    star[0, 1:] = star[1:, 0] = 1.0
    star = star / n ** 0.5
    model = UnrolledDGD(ModelConfig(layers=2, hops=1, server=True, w0_std=0.5), 6, 4, 5)
    with torch.no_grad():
        model.taps.copy_(torch.tensor([[0.4, 0.8], [0.3, 0.9]]))
    traj = model(task, star.to_sparse_csr(), 0)
    w0 = traj.weights[0]
    assert torch.allclose(traj.weights[1][0], 0.8 * (star @ w0.reshape(n, -1))[0].reshape(6, 4), atol=1e-6)


def test_keyed_randomness_is_reproducible(task, shift):
    model = _model()
    a = model(task, shift, 0).weights[-1]
    assert torch.equal(a, model(task, shift, 0).weights[-1])
    assert not torch.equal(a, model(task, shift, 1).weights[-1])
    other = make_task(key=("train", 1))
    assert not torch.equal(batch_indices(task, 0, 1, 5), batch_indices(other, 0, 1, 5))


def test_per_layer_measures_in_groups_equal_the_whole_stack(task, shift, monkeypatch):
    """``Trajectory.per_layer`` stacks W_0..W_L in groups of at most STACK_FLOATS floats: the same values."""
    import surf.models.udgd as udgd

    trajectory = _model()(task, shift, seed=1)
    losses = lambda w: agent_losses(w, task.x_test, task.y_test)  # noqa: E731
    whole = trajectory.per_layer(losses)
    monkeypatch.setattr(udgd, "STACK_FLOATS", 2 * trajectory.weights[0].numel())  # groups of 2 layers
    grouped = trajectory.per_layer(losses)
    assert grouped.shape == whole.shape == (4, task.num_agents)
    assert torch.allclose(grouped, whole, atol=1e-6)
    assert torch.allclose(whole, torch.stack([losses(w) for w in trajectory.weights]), atol=1e-6)
