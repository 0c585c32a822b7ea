"""Meta-test evaluation of the classifier family: per-layer metrics of an unrolled model and the tuned baselines
on the same tasks, as a :class:`~surf.evaluation.summary.Summary`.

Every number is measured on held-out samples that no agent trained on, on the plain meta-test tasks and on their
relabelled twins (a fixed random class permutation per task): a model that memorized one classifier scores well
on the first and collapses on the second; a real optimizer scores the same on both. ``eval.n_async > 0`` drops
agents through the ``fig4_async`` scenario (``surf.scenarios.drops``), the same draws ``surf stress`` makes.
"""

from __future__ import annotations

import torch

from surf.evaluation.baselines import context, evaluate_baselines, message_shape
from surf.evaluation.summary import Communication, Descent, Summary
from surf.families.classifier.family import ClassifierFamily
from surf.families.classifier.measures import constraint_values, declared_quantity, energy_weight, full_data_measures
from surf.graphs.comm import unrolled_cost
from surf.models.udgd import Trajectory, UnrolledDGD
from surf.problems.softmax import agent_accuracies, agent_metrics
from surf.scenarios.scenario import BoundScenario, dropped_agents_scenario


def _masked_mean(values: torch.Tensor, agents: torch.Tensor | None) -> float:
    return (values[..., agents] if agents is not None else values).mean().item()


def method_name(family: ClassifierFamily) -> str:
    return "unrolling" if family.cfg.constraints.kind == "none" else "surf"


def _fallback_counts(trajectory: Trajectory, agents: torch.Tensor | None) -> tuple[float, float]:
    """(safeguard fallbacks, active agent steps) of one trajectory, over the data-holding ``agents``."""
    taken = torch.stack(trajectory.fallbacks)  # (L, N)
    active = torch.stack([torch.ones_like(f) if a is None else a.to(f.device)
                          for f, a in zip(trajectory.fallbacks, trajectory.active, strict=True)])
    if agents is not None:
        taken, active = taken[:, agents], active[:, agents]
    return taken.sum().item(), active.sum().item()


def _drop_change_by_last_layer(change: torch.Tensor, trajectory: Trajectory,
                               agents: torch.Tensor | None) -> torch.Tensor:
    """Sums of ``change`` (N,) and agent counts over the agents that ran the last layer and over those dropped at
    it (they keep their previous model) -> (2 groups, [sum, count])."""
    ran = trajectory.active[-1]
    if ran is None:  # nobody dropped at the last layer
        ran = torch.ones_like(change, dtype=torch.bool)
    counted = torch.ones_like(ran)
    if agents is not None:  # only the data-holding agents count (not a star's server)
        counted = torch.zeros_like(ran).index_fill_(0, agents.to(ran.device), True)
    groups = torch.stack([ran & counted, ~ran & counted]).to(change.dtype)  # (2, N)
    return torch.stack([groups @ change, groups.sum(1)], dim=1)


def _decrease_fraction(values: torch.Tensor) -> float:
    """Share of (trajectory, layer) pairs whose value strictly decreased from layer l-1 to l; (T, L+1) input."""
    return (values[:, 1:] < values[:, :-1]).float().mean().item()


@torch.no_grad()
def evaluate_unrolled(family: ClassifierFamily, model: UnrolledDGD, tasks: list,
                      drops: BoundScenario | None = None, split_drop_loss: bool = False) -> dict:
    """Per-layer held-out accuracy/loss, full-local-gradient norm and training loss, averaged over tasks and drop
    repetitions, and the descent of every quantity: the run's declared one (its constraint: kind, form, epsilon)
    and, on the agents' full local data, the gradient norm, the loss, the energy and the window. With drops and
    ``split_drop_loss``, also each task without drops, for the drop loss split by the last layer (paired by agent)."""
    model.eval()
    cfg, agents = family.cfg, family.data_agents()
    constraints = cfg.constraints
    weight = energy_weight(constraints, model.classical_start)
    repeats = cfg.eval.async_repeats if drops is not None else 1
    paired = drops is not None and split_drop_loss
    acc, loss, finals, declared, slacks, fallbacks, changes = [], [], [], [], [], [], []
    measured: dict[str, list[torch.Tensor]] = {}
    for task in tasks:
        shift = family.shift_for(task)
        if paired:  # the same task without drops: each agent's own accuracy change
            clean_final = agent_accuracies(model(task, shift, cfg.seed).weights[-1], task.x_test, task.y_test)
        for rep in range(repeats):
            schedule = drops.schedule(context(family, task, rep), shift) if drops is not None else None
            mode = drops.async_mode if drops is not None else cfg.eval.async_mode
            trajectory = model(task, shift, cfg.seed, schedule, mode)
            w = torch.stack(trajectory.weights)
            accuracies, losses = agent_metrics(w, task.x_test, task.y_test)  # (L+1, N) each
            acc.append([_masked_mean(a, agents) for a in accuracies])
            if paired:
                changes.append(_drop_change_by_last_layer(accuracies[-1] - clean_final, trajectory, agents))
            loss.append([_masked_mean(v, agents) for v in losses])
            for name, values in full_data_measures(trajectory, task, constraints, weight, agents).items():
                measured.setdefault(name, []).append(values)
            values, slack = constraint_values(trajectory, task, constraints, cfg.seed, weight, agents)
            declared.append(values)
            slacks.append(slack)
            finals.append(acc[-1][-1])
            if trajectory.fallbacks:
                fallbacks.append(_fallback_counts(trajectory, agents))
    curves = {name: torch.stack(values) for name, values in measured.items()}
    by_last = torch.stack(changes).sum(0) if changes else None  # (ran, dropped at the last layer) x (sum, count)
    return {
        "drop_change_by_last_layer": None if by_last is None else {
            group: (total / count).item() for group, (total, count) in zip(("ran", "dropped"), by_last, strict=True)
            if count > 0},
        "accuracy": torch.tensor(acc).mean(0).tolist(),
        "loss": torch.tensor(loss).mean(0).tolist(),
        "grad_norm": curves["gradient_norm"].mean(0).tolist(),
        "train_loss": curves["loss"].mean(0).tolist(),
        "declared": torch.stack(declared).mean(0).tolist(),
        "grad_norm_decrease_fraction": _decrease_fraction(curves["gradient_norm"]),
        "declared_decrease_fraction": _decrease_fraction(torch.stack(declared)),
        "constraint_satisfied_fraction": (torch.stack(slacks) <= 0).float().mean().item(),
        "decrease_fractions": {name: _decrease_fraction(values) for name, values in curves.items()},
        "final_accuracy_std": torch.tensor(finals).std().item() if len(finals) > 1 else 0.0,
        "safeguard_fallback_fraction": (sum(f for f, _ in fallbacks) / max(sum(n for _, n in fallbacks), 1.0)
                                        if fallbacks else None),
    }


def evaluate(family: ClassifierFamily, model: UnrolledDGD, n_async: int | None = None) -> Summary:
    """The meta-test report: the model per layer (plain + relabelled) and the tuned baselines on the same tasks."""
    cfg = family.cfg
    n_async = cfg.eval.n_async if n_async is None else n_async
    drops = dropped_agents_scenario(n_async, cfg.eval.async_mode) if n_async > 0 else None
    tasks = [family.task("test", i) for i in range(cfg.eval.test_tasks)]
    relabelled = [family.task("test", i, relabel=True) for i in range(cfg.eval.test_tasks)]
    plain = evaluate_unrolled(family, model, tasks, drops, split_drop_loss=True)
    other = evaluate_unrolled(family, model, relabelled, drops)
    baselines = evaluate_baselines(family, tasks, relabelled, max(model.rounds, 1), drops)
    edges, floats = message_shape(family, tasks)
    curves = ("accuracy", "loss", "grad_norm", "train_loss", "declared")
    final = {"accuracy": plain["accuracy"][-1], "loss": plain["loss"][-1],
             "accuracy_relabelled": other["accuracy"][-1], "accuracy_std": plain["final_accuracy_std"]}
    if drops is not None:  # where the drop loss sits: each agent's final accuracy minus its own without drops
        final.update({f"drop_change_{group}_last_layer": change
                      for group, change in plain["drop_change_by_last_layer"].items()})
    if "centralized" in baselines:
        final["relative_accuracy"] = plain["accuracy"][-1] / baselines["centralized"].final["accuracy"]
    return Summary(
        family=cfg.family, kind="run", method=method_name(family), layers=cfg.model.layers, rounds=model.rounds,
        final=final, per_layer={k: plain[k] for k in curves}, per_layer_relabelled={k: other[k] for k in curves},
        descent=Descent(grad_norm_decrease_fraction=plain["grad_norm_decrease_fraction"],
                        constraint_satisfied_fraction=plain["constraint_satisfied_fraction"],
                        declared_quantity=declared_quantity(cfg.constraints.kind),
                        declared_decrease_fraction=plain["declared_decrease_fraction"],
                        decrease_fractions=plain["decrease_fractions"],
                        safeguard_fallback_fraction=plain["safeguard_fallback_fraction"]),
        eval={"test_tasks": cfg.eval.test_tasks, "n_async": n_async, "async_mode": cfg.eval.async_mode,
              "async_repeats": cfg.eval.async_repeats if n_async > 0 else 1},
        comparisons=baselines,
        communication=Communication(**unrolled_cost(cfg.model.layers, cfg.model.hops, edges, floats,
                                                    model.vectors_per_message).as_dict()),
    )
