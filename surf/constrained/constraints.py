"""Layer-wise descent constraints (paper eq. 3): slacks ``c_l <= 0`` from a measured quantity ``a_0..a_L``.

``difference`` (paper): ``a_l - (1 - eps) a_{l-1}``; ``ratio`` (authors' code): ``a_l / a_{l-1} - (1 - eps)``;
``normalized``: the difference divided by the detached ``a_{l-1}`` (the ratio's scale with the difference's
gradient). With ``a_l`` the expected gradient norm this is SURF's CI, with the distance to the optimum the TSP
paper's CII.
"""

from __future__ import annotations

import torch

FORMS = ("difference", "ratio", "normalized")


def descent_constraints(values: torch.Tensor, form: str, epsilon: float) -> torch.Tensor:
    """Constraint slacks c_1..c_L (<= 0 means satisfied) from per-layer values a_0..a_L (eq. 3)."""
    now, before = values[1:], values[:-1]
    if form == "difference":
        return now - (1.0 - epsilon) * before
    if form == "ratio":
        return now / before - (1.0 - epsilon)
    if form == "normalized":
        return (now - (1.0 - epsilon) * before) / before.detach()
    raise ValueError(f"unknown constraint form {form!r} (valid: {', '.join(FORMS)})")


def nonincrease_fraction(per_sample: torch.Tensor) -> float:
    """Share of (sample, layer) pairs whose value did not increase from layer l-1 to l; (L+1, B) input."""
    return (per_sample[1:] <= per_sample[:-1]).float().mean().item()
