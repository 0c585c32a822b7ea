"""Convergence to the centralized optimum where theory says it must, on a tiny strongly convex problem (L2 > 0,
float64): DGD with a decaying step, DIGing and EXTRA with a constant step; DGD with a constant step stays biased."""

import pytest
import torch

from surf.baselines.common import is_symmetric_doubly_stochastic, metropolis
from surf.baselines.dgd import run_dgd
from surf.baselines.registry import Settings, run_baseline
from surf.problems.softmax import agent_gradients
from tests.conftest import make_task

N, L2 = 6, 0.5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    """A 6-agent task in float64, a ring (row-normalized with self-loops: symmetric here) and the pooled optimum."""
    task = make_task(n=N, m=20, m_test=5, d=3, c=3, seed=3)
    for name in ("x_train", "x_test", "x_pool"):
        setattr(task, name, getattr(task, name).double())
    adjacency = torch.eye(N, dtype=torch.float64)
    for i in range(N):
        adjacency[i, (i + 1) % N] = adjacency[(i + 1) % N, i] = 1.0
    adjacency[0, 3] = adjacency[3, 0] = 1.0  # a chord: degrees 2 and 3, so row-normalized S is not symmetric
    shift = (adjacency / adjacency.sum(1, keepdim=True)).to_sparse_csr()
    return task, shift, _optimum(task)


def _optimum(task, agents=slice(None)) -> torch.Tensor:
    """argmin (1/N) sum_i f_i(w) + (L2/2)||w||^2 by gradient descent to a gradient norm below 1e-12 (strongly
    convex, so the minimizer is unique; the baselines under test never see it)."""
    w = torch.zeros(task.num_features, task.num_classes, dtype=torch.float64)
    for _ in range(2000):
        x, y = task.x_train[agents], task.y_train[agents]
        grad = agent_gradients(w.expand(x.shape[0], *w.shape), x, y).mean(0) + L2 * w
        if grad.norm() < 1e-12:
            break
        w = w - 0.5 * grad
    assert grad.norm() < 1e-12
    return w


def _error(final: torch.Tensor, optimum: torch.Tensor) -> torch.Tensor:
    """Worst agent's relative distance to the optimum, per grid setting."""
    return (final - optimum).flatten(start_dim=-2).norm(dim=-1).amax(dim=-1) / optimum.norm()


def _w0():
    return torch.zeros(N, 4, 3, dtype=torch.float64)


def test_metropolis_weights_are_symmetric_doubly_stochastic(problem):
    _, shift, _ = problem
    assert not is_symmetric_doubly_stochastic(shift)
    w = metropolis(shift).to_dense()
    assert is_symmetric_doubly_stochastic(w)
    assert torch.isclose(w[0, 3], torch.tensor(1.0 / 4, dtype=torch.float64))  # 1 / (1 + max(3, 3))
    assert torch.isclose(w[1, 2], torch.tensor(1.0 / 3, dtype=torch.float64))  # 1 / (1 + max(2, 2))
    assert torch.equal(w != 0, shift.to_dense() != 0)


@pytest.mark.parametrize("name", ["diging", "extra"])
def test_exact_methods_converge_with_constant_step(problem, name):
    task, shift, optimum = problem
    curves = run_baseline(name, task, shift, _w0(), 400, {"step": torch.tensor([0.2])}, l2=L2)
    assert _error(curves.final, optimum).item() < 1e-6


def test_dgd_constant_step_is_biased_decaying_step_converges(problem):
    task, shift, optimum = problem
    mixing = metropolis(shift)  # doubly stochastic, so DGD's limit is the pooled problem's
    steps, zero = torch.tensor([0.5]), torch.tensor([0.0])
    constant = [_error(run_dgd(task, mixing, _w0(), r, steps, zero, l2=L2).final, optimum).item() for r in (100, 200)]
    decaying = [_error(run_dgd(task, mixing, _w0(), r, steps * 2, zero, l2=L2, decay=1.0).final, optimum).item()
                for r in (100, 400)]
    assert constant[1] > 1e-2 and abs(constant[1] - constant[0]) < 1e-3 * constant[0]  # stalled at a biased point
    assert decaying[1] < 0.6 * decaying[0]  # still approaching the optimum
    assert decaying[1] < 0.05 * constant[1]


def test_centralized_reaches_the_pooled_optimum(problem):
    task, shift, optimum = problem
    curves = run_baseline("centralized", task, shift, _w0(), 300,
                          {"step": torch.tensor([0.5]), "momentum": torch.tensor([0.5])}, l2=L2)
    assert _error(curves.final, optimum).item() < 1e-8


def test_scaffold_removes_fedavgs_client_drift(problem):
    """Star graph, all 5 clients every round, 3 local full-gradient steps: FedAvg's fixed point is biased by client
    drift; SCAFFOLD's control variates make it exact (Karimireddy et al. 2020)."""
    task, _, _ = problem
    adjacency = torch.zeros(N, N, dtype=torch.float64)
    adjacency[0, 1:] = adjacency[1:, 0] = 1.0
    star, clients = adjacency.to_sparse_csr(), torch.arange(1, N)
    optimum = _optimum(task, slice(1, None))
    run = dict(agents=clients, l2=L2, settings=Settings(local_steps=3, clients_per_round=N - 1))
    grid = {"step": torch.tensor([0.3])}
    fedavg = _error(run_baseline("fedavg", task, star, _w0(), 200, grid, **run).final[:, 1:], optimum).item()
    scaffold = _error(run_baseline("scaffold", task, star, _w0(), 200, grid, **run).final[:, 1:], optimum).item()
    assert scaffold < 1e-8
    assert fedavg > 1e-3


def test_the_doubly_stochastic_check_stays_sparse(problem, monkeypatch):
    """EXTRA's and DIGing's check of W made it dense: 40 GB for 100,000 agents."""
    _, shift, _ = problem
    w = metropolis(shift)
    monkeypatch.setattr(torch.Tensor, "to_dense", lambda self: pytest.fail("the check densified S"))
    assert is_symmetric_doubly_stochastic(w.to_sparse_csr()) and not is_symmetric_doubly_stochastic(shift)
    ring = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 0], [1, 2, 3, 0, 0, 1, 2, 3]])
    big = torch.sparse_coo_tensor(ring, torch.full((8,), 0.5), (100_000, 100_000), check_invariants=False)
    assert not is_symmetric_doubly_stochastic(big)  # rows 4.. sum to 0
