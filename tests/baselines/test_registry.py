"""DGD / heavy-ball DGD: eq. 10 step by step, grid batching, convergence, dropped agents."""

import torch

from surf.baselines.dgd import run_dgd
from surf.graphs.network import StepConditions
from surf.problems.softmax import agent_gradients, agent_losses
from tests.conftest import make_task, ring_shift


def test_one_round_matches_eq10(task):
    dense = ring_shift()
    w0 = 0.1 * torch.randn(12, 6, 4)
    # a 1-round run with beta = 0.5: its loss after round 1 equals the loss of the hand-computed iterate
    curves = run_dgd(task, dense.to_sparse_csr(), w0, 1, torch.tensor([0.5]), torch.tensor([0.0]))
    w1 = torch.einsum("ij,jab->iab", dense, w0) - 0.5 * agent_gradients(w0, task.x_train, task.y_train)
    assert torch.isclose(curves.loss[0, 1], agent_losses(w1, task.x_test, task.y_test).mean(), atol=1e-6)


def test_grid_rows_equal_separate_runs(task, shift):
    w0 = 0.1 * torch.randn(12, 6, 4)
    steps, momenta = torch.tensor([0.1, 0.5, 0.5]), torch.tensor([0.0, 0.0, 0.8])
    together = run_dgd(task, shift, w0, 5, steps, momenta)
    for g in range(3):
        alone = run_dgd(task, shift, w0, 5, steps[g:g + 1], momenta[g:g + 1])
        assert torch.allclose(together.loss[g], alone.loss[0], atol=1e-6)


def _learnable_task():
    task = make_task(n=8, m=40, m_test=40, d=3, c=3, seed=1)
    task.y_train = (task.x_train @ torch.randn(4, 3, generator=torch.Generator().manual_seed(0))).argmax(-1)
    task.x_test, task.y_test = task.x_train, task.y_train  # track the training objective
    return task


def test_dgd_decreases_training_objective_on_consensus_graph():
    task = _learnable_task()
    shift = (torch.ones(8, 8) / 8).to_sparse_csr()  # complete graph: exact averaging
    curves = run_dgd(task, shift, torch.zeros(8, 4, 3), 200, torch.tensor([0.5]), torch.tensor([0.0]))
    assert curves.loss[0, -1] < 0.8 * curves.loss[0, 0]
    assert torch.all(curves.loss[0, 1:] <= curves.loss[0, :-1] + 1e-6)  # monotone with a small step


def test_momentum_accelerates_on_this_problem():
    task = _learnable_task()
    shift = (torch.ones(8, 8) / 8).to_sparse_csr()
    curves = run_dgd(task, shift, torch.zeros(8, 4, 3), 30, torch.tensor([0.2, 0.2]), torch.tensor([0.0, 0.8]))
    assert curves.loss[1, -1] < curves.loss[0, -1]


def test_dropped_agents_do_not_move(task, shift):
    w0 = 0.1 * torch.randn(12, 6, 4)
    dropped = torch.ones(12, dtype=torch.bool)
    dropped[[1, 5]] = False
    all_dropped_curves = run_dgd(task, shift, w0, 3, torch.tensor([0.5]), torch.tensor([0.0]),
                                 schedule=lambda r: StepConditions(active=torch.zeros(12, dtype=torch.bool)))
    assert torch.allclose(all_dropped_curves.loss[0], all_dropped_curves.loss[0, :1].expand(4))
    plain = run_dgd(task, shift, w0, 3, torch.tensor([0.5]), torch.tensor([0.0]))
    masked = run_dgd(task, shift, w0, 3, torch.tensor([0.5]), torch.tensor([0.0]),
                     schedule=lambda r: StepConditions(active=dropped))
    assert not torch.allclose(plain.loss, masked.loss)
