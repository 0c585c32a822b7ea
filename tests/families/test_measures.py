"""The classifier's descent quantities: loss, heavy-ball energy, window, their weight c and the constraint kinds."""

import dataclasses

import pytest
import torch

from surf.config import ConstraintConfig, ModelConfig
from surf.families.classifier.measures import (
    constraint_values,
    declared_quantity,
    energies,
    energy_weight,
    full_data_measures,
    gradient_norms,
    squared_steps,
    training_losses,
    windowed,
)
from surf.models.udgd import Trajectory, UnrolledDGD
from surf.problems.softmax import agent_gradients, agent_losses


def _trajectory(task, layers=4):
    gen = torch.Generator().manual_seed(1)
    return Trajectory(weights=[torch.randn(task.num_agents, 6, 4, generator=gen) for _ in range(layers + 1)])


def test_loss_energy_and_window_equal_their_equations(task):
    trajectory = _trajectory(task)
    w = trajectory.weights
    f = torch.stack([agent_losses(x, task.x_train, task.y_train).mean() for x in w])
    steps = torch.stack([torch.zeros(())] + [(b - a).pow(2).sum(dim=(-2, -1)).mean()
                                             for a, b in zip(w[:-1], w[1:], strict=True)])
    assert torch.allclose(training_losses(trajectory, task), f, atol=1e-6)
    assert torch.allclose(squared_steps(trajectory), steps, atol=1e-5)
    assert torch.allclose(energies(trajectory, task, 0.4), f + 0.4 * steps, atol=1e-5)
    v = torch.tensor([4.0, 2.0, 3.0, 1.0])
    assert windowed(v, "mean").tolist() == [4.0, 3.0, 2.5, 2.0]
    assert windowed(v, "max").tolist() == [4.0, 4.0, 3.0, 3.0]
    agents = torch.tensor([1, 3, 5])
    subset = torch.stack([agent_losses(x, task.x_train, task.y_train)[agents].mean() for x in w])
    assert torch.allclose(training_losses(trajectory, task, agents), subset, atol=1e-6)


def test_energy_weight_defaults_to_beta_over_two_alpha():
    start = torch.tensor([1.0, 0.8])
    assert energy_weight(ConstraintConfig(), start) == pytest.approx(0.4)
    assert energy_weight(ConstraintConfig(energy_weight=2.5), start) == 2.5
    model = UnrolledDGD(ModelConfig(layers=2, hops=1, step_init=0.5, momentum_init=0.5), 6, 4, 5)
    assert energy_weight(ConstraintConfig(), model.classical_start) == pytest.approx(0.5)


def test_heavy_ball_energy_decreases_where_the_gradient_norm_need_not(task):
    """Heavy-ball on each agent's own loss (no mixing) with alpha < 2 (1 - beta) / L: the energy with
    c = beta / (2 alpha) never increases (the Lyapunov inequality) while the gradient norm does."""
    x = task.x_train
    smoothness = 0.5 * torch.linalg.eigvalsh(x.transpose(1, 2) @ x / x.shape[1]).max()  # CE Hessian <= X^T X / 2m
    beta = 0.95
    alpha = float(1.9 * (1 - beta) / smoothness)
    w = torch.randn(task.num_agents, 6, 4, generator=torch.Generator().manual_seed(0))
    previous, weights = w, [w]
    for _ in range(60):
        w, previous = w - alpha * agent_gradients(w, x, task.y_train) + beta * (w - previous), w
        weights.append(w)
    trajectory = Trajectory(weights=weights)
    energy = energies(trajectory, task, beta / (2 * alpha))
    assert (energy[1:] <= energy[:-1] + 1e-6).all()
    norms = gradient_norms(trajectory, task, "full")
    assert (norms[1:] > norms[:-1]).any()  # momentum raises the gradient norm somewhere; the energy never
    too_light = energies(trajectory, task, 0.01 * beta / (2 * alpha))  # c far below beta / (2 alpha): f alone
    assert (too_light[1:] > too_light[:-1]).any()


@pytest.mark.parametrize("kind", ["gradient_norm", "loss", "energy", "window", "none"])
def test_constraint_values_of_every_kind_are_differentiable_slacks(task, kind):
    weights = [torch.randn(task.num_agents, 6, 4, requires_grad=True) for _ in range(4)]
    trajectory = Trajectory(weights=weights)
    cfg = ConstraintConfig(kind=kind, form="ratio", epsilon=0.1, gradient_on="full")
    values, slacks = constraint_values(trajectory, task, cfg, 0, 0.4)
    expected = full_data_measures(trajectory, task, cfg, 0.4)[declared_quantity(kind)]
    assert torch.allclose(values, expected, atol=1e-5)
    assert torch.allclose(slacks, values[1:] / values[:-1] - 0.9, atol=1e-6)
    slacks.sum().backward()
    assert weights[1].grad is not None and torch.isfinite(weights[1].grad).all()
    assert declared_quantity(kind) == ("gradient_norm" if kind == "none" else kind)


def test_window_measures_the_constraints_gradient_norms(task):
    trajectory = _trajectory(task)
    cfg = dataclasses.replace(ConstraintConfig(kind="window", window_reduce="max"), gradient_on="full")
    values, _ = constraint_values(trajectory, task, cfg, 0, 0.0)
    assert torch.allclose(values, windowed(gradient_norms(trajectory, task, "full"), "max"))
