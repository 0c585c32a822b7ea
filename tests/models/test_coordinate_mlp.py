"""The compact step's coordinate MLP (one autograd function) equals nn.Linear -> tanh -> nn.Linear with the
per-agent feature normalization, in value and in every gradient, with the same bits on 1 and 2 threads;
recomputation changes no gradient."""

import pytest
import torch

from surf.config import ModelConfig
from surf.models.coordinate_mlp import coordinate_mlp
from surf.models.steps import CompactStep, rms
from surf.models.udgd import UnrolledDGD
from tests.conftest import make_task, ring_shift


def test_mlp_equals_the_module_reference_in_float64():
    torch.manual_seed(0)
    first, second = torch.nn.Linear(4, 8).double(), torch.nn.Linear(8, 1).double()
    features = torch.randn(4, 5, 3, 2, dtype=torch.float64, requires_grad=True)
    reference = second(torch.tanh(first(features.movedim(0, -1)))).squeeze(-1)
    out = coordinate_mlp(features, first, second)
    assert torch.allclose(out, reference, atol=1e-12)
    weights = torch.randn_like(out)
    params = [features, *first.parameters(), *second.parameters()]
    for a, b in zip(torch.autograd.grad((out * weights).sum(), params),
                    torch.autograd.grad((reference * weights).sum(), params), strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_mlp_gradients_are_the_same_bits_on_one_and_two_threads(threads):
    """At the quickstart's 65,000 coordinates, where MKL splits long products by thread count on some CPUs (the
    weights' GEMV on an Intel Xeon with AVX-512, ``A^T G`` on an AMD EPYC as well): the backward keeps one order."""
    gen = torch.Generator().manual_seed(3)
    first, second = torch.nn.Linear(5, 16), torch.nn.Linear(16, 1)
    for parameter in (*first.parameters(), *second.parameters()):
        torch.nn.init.normal_(parameter, generator=gen)
    features, weights = torch.randn(5, 100, 65, 10, generator=gen), torch.randn(100, 65, 10, generator=gen)
    grads = []
    for count in (1, 2):
        threads(count)
        inputs = features.clone().requires_grad_()
        params = [inputs, *first.parameters(), *second.parameters()]
        grads.append(torch.autograd.grad((coordinate_mlp(inputs, first, second) * weights).sum(), params))
    for one, two in zip(*grads, strict=True):
        assert torch.equal(one, two)


def test_compact_step_normalizes_each_feature_per_agent():
    torch.manual_seed(1)
    step = CompactStep(ModelConfig(hidden=8)).double()
    torch.nn.init.normal_(step.mlp[2].weight)
    w, g, d, gap = (torch.randn(6, 5, 3, dtype=torch.float64) for _ in range(4))
    features = torch.stack([g / rms(g), d / rms(d), gap / rms(gap), w / rms(w)], dim=-1)
    expected = step.step * g - step.momentum * d - step.mlp(features).squeeze(-1) * rms(g)
    assert torch.allclose(step(w, g, d, gap), expected, atol=1e-12)


@pytest.mark.parametrize("hops", [1, 2])
def test_recomputing_the_local_steps_and_filters_changes_no_gradient(hops):
    """``model.recompute`` (local steps per chunk, graph filters' hops, heap released per layer): the same
    trajectory, and the same gradients for every parameter, taps included."""
    task, shift = make_task(), ring_shift().to_sparse_csr()
    grads, trajectories = [], []
    for recompute in (False, True):
        torch.manual_seed(2)
        model = UnrolledDGD(ModelConfig(layers=3, hops=hops, hidden=4, local_gradient="full", recompute=recompute),
                            task.num_features, task.num_classes, batch_size=4)
        for step in model.steps:
            torch.nn.init.normal_(step.mlp[2].weight, std=0.5)
        torch.nn.init.normal_(model.taps, std=0.5)
        trajectory = model(task, shift, seed=0)
        loss = sum(w.pow(2).sum() for w in trajectory.weights) + torch.stack(trajectory.full_gradients).sum()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
        trajectories.append(trajectory.weights)
    for a, b in zip(*trajectories, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
