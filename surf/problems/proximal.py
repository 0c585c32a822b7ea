"""Proximal gradient iterations, shared by every problem's classical solver (LASSO, inpainting with a DCT prior).

``x_k = prox_{eta h}(z_k - eta grad g(z_k))`` with ``z_k = x_{k-1}`` (ISTA) or the FISTA extrapolation
``z_k = x_{k-1} + ((t_{k-1} - 1) / t_k)(x_{k-1} - x_{k-2})``, ``t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2``
(Beck & Teboulle 2009). An optional ``perturb(k, x_k)`` hook adds noise to the iterates (the robustness protocol).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Perturb = Callable[[int, torch.Tensor], torch.Tensor]  # (layer / iteration l, x_l) -> perturbed x_l


def proximal_gradient(x0: torch.Tensor, gradient: Callable[[torch.Tensor], torch.Tensor],
                      prox: Callable[[torch.Tensor, float], torch.Tensor], eta: float, iters: int,
                      accelerated: bool = False, perturb: Perturb | None = None) -> list[torch.Tensor]:
    """ISTA (``accelerated=False``) or FISTA from ``x0`` with step ``eta``; returns ``[x_0..x_iters]``.

    ``gradient(x)`` is ``grad g(x)`` of the smooth part, ``prox(v, eta)`` the proximal map of ``eta h``.
    """
    x = z = x0
    t = 1.0
    iterates = [x]
    for k in range(1, iters + 1):
        x_next = prox(z - eta * gradient(z), eta)
        if perturb is not None:
            x_next = perturb(k, x_next)
        if accelerated:
            t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
            z = x_next + ((t - 1.0) / t_next) * (x_next - x)
            t = t_next
        else:
            z = x_next
        x = x_next
        iterates.append(x)
    return iterates
