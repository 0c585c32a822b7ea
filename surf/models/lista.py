"""Unrolled ISTA networks: LISTA (untied per-layer matrices and thresholds) and an ALISTA-style small variant.

Both map signals ``y`` (B, n) to the trajectory ``[x_0 = 0, x_1, ..., x_L]`` of codes (B, m). An optional
``perturb(l, x_l)`` hook adds noise to layer outputs (training-time noise injection, test-time perturbations).
Both start as ISTA (LISTA) or as ISTA on the analytic weight (ALISTA), so an untrained network is a classical solver.
"""

from __future__ import annotations

import torch
from torch import nn

from surf.problems.lasso import Perturb, soft_threshold, step_size


def ista_weights(dictionary: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """ISTA as a LISTA layer: ``W = eta D^T`` (m, n), ``S = I - eta D^T D`` (m, m), threshold ``eta rho``."""
    eta = step_size(dictionary)
    eye = torch.eye(dictionary.shape[1], dtype=dictionary.dtype)
    return eta * dictionary.T, eye - eta * dictionary.T @ dictionary, eta * rho


def analytic_weight(dictionary: torch.Tensor) -> torch.Tensor:
    """ALISTA's analytic weight, Frobenius version: ``w_i = argmin ||D^T w||^2 s.t. d_i^T w = 1`` (closed form).

    ``w_i = (D D^T)^{-1} d_i / (d_i^T (D D^T)^{-1} d_i)`` (Liu, Chen, Wang & Yin, ICLR 2019, eq. 15 with the
    Frobenius norm) -> (n, m). Needs ``D D^T`` invertible (an overcomplete dictionary of full row rank).
    """
    d64 = dictionary.double()
    solved = torch.linalg.solve(d64 @ d64.T, d64)
    return (solved / (d64 * solved).sum(0, keepdim=True)).to(dictionary.dtype)


class LISTA(nn.Module):
    """``x_l = soft(W_l y + S_l x_{l-1}, theta_l)`` with untied ``W_l`` (m, n), ``S_l`` (m, m), ``theta_l`` (m,).

    Gregor & LeCun (2010); initialized at ISTA's values (the robust-unrolling code draws N(0, 0.01^2) instead).
    """

    def __init__(self, dictionary: torch.Tensor, rho: float, layers: int) -> None:
        super().__init__()
        w, s, threshold = ista_weights(dictionary.float(), rho)
        self.layers = layers
        self.weight_y = nn.Parameter(w.repeat(layers, 1, 1))
        self.weight_x = nn.Parameter(s.repeat(layers, 1, 1))
        self.threshold = nn.Parameter(torch.full((layers, dictionary.shape[1]), threshold))

    def forward(self, y: torch.Tensor, perturb: Perturb | None = None) -> list[torch.Tensor]:
        x = y.new_zeros(y.shape[0], self.weight_x.shape[-1])
        trajectory = [x]
        for layer in range(self.layers):
            x = soft_threshold(y @ self.weight_y[layer].T + x @ self.weight_x[layer].T, self.threshold[layer])
            if perturb is not None:
                x = perturb(layer + 1, x)
            trajectory.append(x)
        return trajectory


class ALISTA(nn.Module):
    """``x_l = soft(x_{l-1} - gamma_l W^T (D x_{l-1} - y), theta_l)``: a fixed analytic ``W``, 2 scalars per layer."""

    def __init__(self, dictionary: torch.Tensor, rho: float, layers: int) -> None:
        super().__init__()
        dictionary = dictionary.float()
        weight = analytic_weight(dictionary)
        gamma = 1.0 / torch.linalg.matrix_norm(weight.T @ dictionary, ord=2).item()
        self.layers = layers
        self.register_buffer("dictionary", dictionary)
        self.register_buffer("weight", weight)
        self.gamma = nn.Parameter(torch.full((layers,), gamma))
        self.threshold = nn.Parameter(torch.full((layers,), gamma * rho))

    def forward(self, y: torch.Tensor, perturb: Perturb | None = None) -> list[torch.Tensor]:
        x = y.new_zeros(y.shape[0], self.dictionary.shape[1])
        trajectory = [x]
        for layer in range(self.layers):
            residual = x @ self.dictionary.T - y
            x = soft_threshold(x - self.gamma[layer] * residual @ self.weight, self.threshold[layer])
            if perturb is not None:
                x = perturb(layer + 1, x)
            trajectory.append(x)
        return trajectory


def build_unrolled(variant: str, dictionary: torch.Tensor, rho: float, layers: int) -> nn.Module:
    """``lista`` or ``alista`` on ``dictionary``."""
    return (ALISTA if variant == "alista" else LISTA)(dictionary, rho, layers)
