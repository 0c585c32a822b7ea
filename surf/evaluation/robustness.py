"""The robustness protocol shared by the families' evaluators: every method on the same test problems at each
perturbation strength (the same keyed draws for every method), recorded as one typed ``Robustness`` curve."""

from __future__ import annotations

from collections.abc import Callable

from surf.evaluation.summary import Robustness


def strength_sweep(strengths: list[float], run: Callable[[float], dict[str, dict]],
                   pick: Callable[[dict], dict]) -> Robustness:
    """``run(delta)`` -> {method: report} at every strength; ``pick(report)`` is what each point records."""
    curves: dict[str, list] = {}
    for delta in strengths:
        for method, report in run(delta).items():
            curves.setdefault(method, []).append(pick(report))
    return Robustness(strengths=list(strengths), methods=curves)
