"""The one model of dropped (asynchronous) agents: which agents sit out step t (a layer of an unrolled model; a
baseline maps its rounds onto the same steps) of one task and repetition.

Every agent gets a uniform score keyed by ``(seed, "drops", task key, step, repetition)``; the ``count`` lowest
scores are dropped. The key holds neither the method nor the count, so every method (U-DGD, every baseline, the
Flower runtime) sees the same silent agents, and raising the count only adds drops (common random numbers across
severities). ``surf eval -o eval.n_async=n``, repetition r of ``surf stress --scenario fig4_async --severity n`` and
``surf deploy --scenario dropped:n`` all call :func:`dropped_agents`.
"""

from __future__ import annotations

import torch

from surf.utils.seeding import torch_generator


def agent_scores(seed: int, task_key: tuple, step: int, repetition: int, num_agents: int,
                 protect: int | None = None, stream: tuple = ()) -> torch.Tensor:
    """Uniform (N,) scores keyed by ``(seed, "drops", *stream, *task_key, repetition, step)``; ``protect`` (the star
    graph's server) scores 2, so it is never among the lowest. ``stream`` separates independent draws (the
    perturbations of a composed scenario)."""
    gen = torch_generator(seed, "drops", *stream, *task_key, repetition, step)
    scores = torch.rand(num_agents, generator=gen)
    if protect is not None:
        scores[protect] = 2.0
    return scores


def lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """(N,) bool mask of the ``count`` lowest scores."""
    mask = torch.zeros(scores.shape[0], dtype=torch.bool)
    mask[torch.argsort(scores)[:count]] = True
    return mask


def dropped_agents(num_agents: int, count: int, seed: int, task_key: tuple, step: int, repetition: int = 0,
                   protect: int | None = None) -> torch.Tensor:
    """(N,) bool mask of the ``count`` agents that neither update nor send at ``step`` (1-based)."""
    if count == 0:
        return torch.zeros(num_agents, dtype=torch.bool)
    return lowest(agent_scores(seed, task_key, step, repetition, num_agents, protect), count)
