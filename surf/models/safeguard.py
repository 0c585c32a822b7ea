"""The run-time safeguard of the learned step (``model.safeguard: loss``), in the spirit of safeguarded /
loss-guarded learned optimizers (Heaton et al. 2020; Prémont-Schwarz et al. 2022): every agent computes both its
learned update and the classical heavy-ball update from the same state, and keeps the learned one only when it
leaves the agent's own local loss no higher:

    u_i = u_i^learned  if  f_i(H_l(W)_i - u_i^learned) <= f_i(H_l(W)_i - u_i^classical)  else  u_i^classical,
    u_i^classical = alpha g_i - beta delta_i                                                      (eq. 10)

with ``(alpha, beta)`` the model's classical start (the tuned heavy-ball DGD of its warm start) and ``H_l(W)_i`` the
agent's graph-filter output (eq. 12; the same messages, no extra communication). Per layer, the agents' mean local
loss f(W_l) is then never above what the classical step from the same state would give. Agent-local: two loss
evaluations on the agent's own data per layer, so the vectorized engine and a Flower node apply it identically.
"""

from __future__ import annotations

import torch

from surf.problems.softmax import agent_losses


def loss_guard(learned: torch.Tensor, classical: torch.Tensor, filtered: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The guarded updates (N, d+1, C) and the mask (N,) of agents that fell back to the classical one."""
    fallback = agent_losses(filtered - learned, x, y) > agent_losses(filtered - classical, x, y)
    return torch.where(fallback.view(-1, 1, 1), classical, learned), fallback
