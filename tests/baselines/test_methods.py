"""Every registered baseline: grid batching, dropped agents, SURF's mini-batch streams, star-graph methods."""

import pytest
import torch

from surf.baselines.registry import BASELINES, Settings, grid_product, run_baseline
from surf.data.batches import batch_indices, gather_batch
from surf.graphs.network import StepConditions
from surf.problems.softmax import agent_gradients, agent_losses
from surf.utils.errors import ConfigError
from tests.conftest import make_task, ring_shift

N = 7
SETTINGS = Settings(local_steps=2, clients_per_round=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def star_shift(n=N):
    """Star with the server at node 0 (no self-loops), scaled by lambda_max = sqrt(n - 1), as topology 'star'."""
    adjacency = torch.zeros(n, n)
    adjacency[0, 1:] = adjacency[1:, 0] = 1.0
    return (adjacency / (n - 1) ** 0.5).to_sparse_csr()


def _setup(name):
    if BASELINES[name].star:
        return make_task(n=N), star_shift(), torch.arange(1, N)
    return make_task(n=N), ring_shift(N).to_sparse_csr(), None


def _grid(name):
    """A 3-setting grid of the method's own hyper-parameters."""
    grid = grid_product(BASELINES[name].grid)
    return {k: v[:3] for k, v in grid.items()}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_grid_rows_equal_separate_runs(name):
    task, shift, agents = _setup(name)
    w0 = 0.1 * torch.randn(N, 6, 4, generator=torch.Generator().manual_seed(1))
    grid = _grid(name)
    run = dict(agents=agents, batch=3, settings=SETTINGS, seed=2)
    together = run_baseline(name, task, shift, w0, 4, grid, **run)
    for g in range(3):
        alone = run_baseline(name, task, shift, w0, 4, {k: v[g:g + 1] for k, v in grid.items()}, **run)
        assert torch.allclose(together.loss[g], alone.loss[0], atol=1e-5)
        assert torch.allclose(together.final[g], alone.final[0], atol=1e-5)
    assert not torch.allclose(together.final[0], w0)  # it moved


@pytest.mark.parametrize("name", sorted(n for n, s in BASELINES.items() if s.communicates))
def test_all_agents_dropped_leaves_weights_unchanged(name):
    task, shift, agents = _setup(name)
    w0 = 0.1 * torch.randn(N, 6, 4, generator=torch.Generator().manual_seed(1))
    nobody = StepConditions(active=torch.zeros(N, dtype=torch.bool))
    curves = run_baseline(name, task, shift, w0, 3, _grid(name), agents=agents, batch=3, settings=SETTINGS,
                          schedule=lambda r: nobody)
    start = run_baseline(name, task, shift, w0, 0, _grid(name), agents=agents, settings=SETTINGS)
    assert torch.equal(curves.final, start.final)
    assert torch.allclose(curves.loss, curves.loss[:, :1].expand_as(curves.loss))


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "scaffold"])
def test_star_methods_refuse_other_graphs(name):
    task = make_task(n=N)
    with pytest.raises(ConfigError, match="topology.name=star"):
        run_baseline(name, task, ring_shift(N).to_sparse_csr(), torch.zeros(N, 6, 4), 1, _grid(name))


def test_dsgd_uses_surfs_minibatch_stream():
    task, shift, _ = _setup("dsgd")
    w0 = 0.1 * torch.randn(N, 6, 4, generator=torch.Generator().manual_seed(1))
    curves = run_baseline("dsgd", task, shift, w0, 1, {"step": torch.tensor([0.5])}, batch=3, seed=5)
    xb, yb = gather_batch(task.x_train, task.y_train, batch_indices(task, 5, 1, 3))  # SURF's layer-1 batch
    w1 = torch.einsum("ij,jab->iab", shift.to_dense(), w0) - 0.5 * agent_gradients(w0, xb, yb)
    assert torch.allclose(curves.final[0], w1, atol=1e-6)


def test_fedavg_full_participation_one_full_step_is_centralized_gd():
    """FedAvg, every client, one local full-gradient step = one gradient step on the clients' pooled objective."""
    task, shift, agents = _setup("fedavg")
    w0 = 0.1 * torch.randn(N, 6, 4, generator=torch.Generator().manual_seed(1))
    settings = Settings(local_steps=1, clients_per_round=N - 1)
    curves = run_baseline("fedavg", task, shift, w0, 1, {"step": torch.tensor([0.5])}, agents=agents,
                          settings=settings)
    x = w0[0]
    expected = x - 0.5 * agent_gradients(x.expand(N - 1, *x.shape), task.x_train[1:], task.y_train[1:]).mean(0)
    assert torch.allclose(curves.final[0], expected.expand(N, *x.shape), atol=1e-6)
    assert torch.isclose(curves.loss[0, 1], agent_losses(expected, task.x_test[1:], task.y_test[1:]).mean())


def test_fedavg_uses_only_participants():
    """With 1 participant per round, the global model after round 1 is that client's local model."""
    task, shift, agents = _setup("fedavg")
    w0 = torch.zeros(N, 6, 4)
    settings = Settings(local_steps=1, clients_per_round=1)
    curves = run_baseline("fedavg", task, shift, w0, 1, {"step": torch.tensor([1.0])}, agents=agents,
                          settings=settings)
    local = -agent_gradients(w0[1:], task.x_train[1:], task.y_train[1:])  # every client's one-step model
    matches = [torch.allclose(curves.final[0, 0], local[i], atol=1e-6) for i in range(N - 1)]
    assert sum(matches) == 1


@pytest.mark.parametrize("name", ["fedavg", "scaffold"])
def test_server_without_participants_keeps_the_global_model(name):
    """Every client dropped, the server up: nobody uploads, so the global model stays the server's W_0."""
    task, shift, agents = _setup(name)
    w0 = 0.1 * torch.randn(N, 6, 4, generator=torch.Generator().manual_seed(1))
    server_only = StepConditions(active=torch.arange(N) == 0)
    curves = run_baseline(name, task, shift, w0, 2, {"step": torch.tensor([0.5])}, agents=agents, settings=SETTINGS,
                          schedule=lambda r: server_only)
    assert torch.allclose(curves.final[0], w0[0].expand(N, 6, 4))
