"""Descent-constraint forms, dual projection and the batch alignment of constraint gradients."""

import pytest
import torch

from surf.constrained.constraints import descent_constraints
from surf.constrained.duals import DualVariables


def test_difference_ratio_normalized_forms():
    a = torch.tensor([4.0, 2.0, 3.0])
    eps = 0.1
    assert torch.allclose(descent_constraints(a, "difference", eps), torch.tensor([2.0 - 3.6, 3.0 - 1.8]))
    assert torch.allclose(descent_constraints(a, "ratio", eps), torch.tensor([0.5 - 0.9, 1.5 - 0.9]))
    assert torch.allclose(descent_constraints(a, "normalized", eps), torch.tensor([(2 - 3.6) / 4, (3 - 1.8) / 2]))
    with pytest.raises(ValueError):
        descent_constraints(a, "bogus", eps)


def test_normalized_form_gradient_has_ratio_scale_but_difference_shape():
    a = torch.tensor([4.0, 2.0], requires_grad=True)
    (g,) = torch.autograd.grad(descent_constraints(a, "normalized", 0.0).sum(), a)
    assert torch.allclose(g, torch.tensor([-1.0 / 4.0, 1.0 / 4.0]))


def test_dual_ascent_projects_onto_nonnegative_orthant_and_cap():
    duals = DualVariables(3, step_size=0.5, cap=1.0)
    duals.update(torch.tensor([1.0, -4.0, 10.0]))
    assert torch.allclose(duals.value, torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64))
    duals.update(torch.tensor([-2.0, 1.0, -0.5]))
    assert torch.allclose(duals.value, torch.tensor([0.0, 0.5, 0.75], dtype=torch.float64))


def test_dual_state_roundtrip():
    duals = DualVariables(2, 0.1)
    duals.update(torch.tensor([1.0, 2.0]))
    other = DualVariables(2, 0.1)
    other.load_state_dict(duals.state_dict())
    assert torch.equal(other.value, duals.value)
