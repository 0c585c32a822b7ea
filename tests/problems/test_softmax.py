"""Closed-form softmax-regression pieces against autograd and optimality conditions."""

import torch
import torch.nn.functional as F

from surf.problems.softmax import (
    agent_accuracies,
    agent_gradients,
    agent_losses,
    agent_metrics,
    pooled_optimum,
    stacked_norm,
)


def _problem(n=5, m=7, d=4, c=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, m, d, generator=gen), torch.ones(n, m, 1)], dim=-1).double()
    y = torch.randint(0, c, (n, m), generator=gen)
    w = torch.randn(n, d + 1, c, generator=gen, dtype=torch.float64)
    return w, x, y


def test_closed_form_gradient_equals_autograd():
    w, x, y = _problem()
    w.requires_grad_(True)
    # sum of per-agent losses: d/dW_i of the sum is grad f_i
    (auto,) = torch.autograd.grad(agent_losses(w, x, y).sum(), w)
    assert torch.allclose(agent_gradients(w, x, y), auto, atol=1e-12)


def test_losses_match_torch_cross_entropy():
    w, x, y = _problem()
    expected = torch.stack([F.cross_entropy(x[i] @ w[i], y[i]) for i in range(w.shape[0])])
    assert torch.allclose(agent_losses(w, x, y), expected, atol=1e-12)


def test_gradient_is_batched_over_leading_dims():
    w, x, y = _problem()
    stacked = torch.stack([w, 2 * w, -w])  # (3, N, d+1, C) e.g. layers or a step-size grid
    g = agent_gradients(stacked, x, y)
    for j, scale in enumerate((1, 2, -1)):
        assert torch.allclose(g[j], agent_gradients(scale * w, x, y))


def test_gradient_is_differentiable_for_constraints():
    w, x, y = _problem()
    w.requires_grad_(True)
    norm = stacked_norm(agent_gradients(w, x, y))
    (grad,) = torch.autograd.grad(norm, w)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_stacked_norm_is_frobenius_over_agents_and_masks():
    g = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.isclose(stacked_norm(g), g.norm())
    assert torch.isclose(stacked_norm(g, torch.tensor([1])), g[1].norm())


def test_metrics_are_the_two_calls_bit_for_bit():
    """``agent_metrics`` shares one product of logits between accuracy and loss: the same bits as the two calls, for a
    single model per agent and for a stack of models (leading dims) sharing one x."""
    w, x, y = _problem()
    stack = torch.stack([w, 2 * w, -w])  # (3, N, d+1, C)
    for weights in (w, stack, w.float()):
        xs = x.to(weights.dtype)
        accuracy, loss = agent_metrics(weights, xs, y)
        assert torch.equal(accuracy, agent_accuracies(weights, xs, y))
        assert torch.equal(loss, agent_losses(weights, xs, y))
    assert agent_metrics(stack, x, y)[1].shape == (3, 5)


def test_accuracy_counts_argmax_hits():
    w = torch.zeros(1, 2, 2)
    w[0, 0, 1] = 1.0  # class 1 wins when the feature is positive
    x = torch.tensor([[[1.0, 1.0], [-1.0, 1.0]]])
    assert agent_accuracies(w, x, torch.tensor([[1, 0]])).item() == 1.0
    assert agent_accuracies(w, x, torch.tensor([[0, 0]])).item() == 0.5


def test_pooled_optimum_satisfies_first_order_conditions():
    _, x, y = _problem(n=1, m=60)
    x, y = x[0].float(), y[0]
    l2 = 1e-2
    w = pooled_optimum(x, y, 3, l2).double().requires_grad_(True)
    loss = F.cross_entropy(x.double() @ w, y) + 0.5 * l2 * (w * w).sum()
    (grad,) = torch.autograd.grad(loss, w)
    assert grad.abs().max() < 1e-5
