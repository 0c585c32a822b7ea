"""The formulation chain: slacks (eq. 3) -> Lagrangian (eq. 4) -> projected dual step (eq. 5)."""

import torch

from surf.config import ConstraintConfig
from surf.constrained.formulation import DescentFormulation


def test_lagrangian_and_dual_step_follow_the_equations():
    formulation = DescentFormulation(ConstraintConfig(kind="gradient_norm", form="difference", epsilon=0.1,
                                                      dual_lr=0.5, dual_max=0.3), num_constraints=3)
    values = torch.tensor([4.0, 3.0, 3.5, 1.0])
    slacks = formulation.slacks(values)
    assert torch.allclose(slacks, torch.tensor([3.0 - 0.9 * 4.0, 3.5 - 0.9 * 3.0, 1.0 - 0.9 * 3.5]))
    objective = torch.tensor(2.0)
    assert formulation.lagrangian(objective, slacks) == objective  # lambda starts at 0
    formulation.dual_step(slacks)
    expected = (0.5 * slacks.double()).clamp(0.0, 0.3)
    assert torch.allclose(formulation.duals.value, expected)
    assert formulation.lagrangian(objective, slacks) == objective + (expected.float() * slacks).sum()


def test_unconstrained_formulation_never_moves_the_duals():
    formulation = DescentFormulation(ConstraintConfig(kind="none"), num_constraints=2)
    slacks = torch.tensor([1.0, 2.0])
    formulation.dual_step(slacks)
    assert torch.equal(formulation.duals.value, torch.zeros(2, dtype=torch.float64))
    assert formulation.lagrangian(torch.tensor(1.5), slacks) == 1.5
