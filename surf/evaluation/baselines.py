"""Tuned baselines on the meta-test tasks: hyper-parameters chosen on validation tasks (or the paper's preset),
then run with the same W_0, mini-batch streams, graphs and dropped agents as the unrolled model.

Every number is a held-out accuracy / loss on the plain meta-test tasks and on their relabelled twins. Dropped
agents come from one compiled scenario per task (``surf.scenarios``): a baseline with K rounds per layer reads the
unrolled model's step ``ceil(r / K)`` at round r, so the same agents are silent in the same communication window.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from surf.baselines.registry import Settings, communication, grid_product, run_baseline, spec
from surf.config import Config
from surf.data.batches import initial_weights
from surf.evaluation.summary import Communication, Comparison, WarmStart
from surf.evaluation.tuning_cache import cached_tuning
from surf.families.classifier.family import ClassifierFamily
from surf.graphs.comm import directed_edges
from surf.graphs.gso import shift_power
from surf.models.udgd import SERVER
from surf.scenarios.perturbations import Context
from surf.scenarios.scenario import BoundScenario


def baseline_settings(cfg: Config) -> Settings:
    """The fixed (untuned) settings of the local-step and server-client baselines."""
    return Settings(local_steps=cfg.eval.local_steps, clients_per_round=cfg.eval.clients_per_round)


def baseline_grid(cfg: Config, name: str) -> dict[str, list[float]]:
    """The tuning grid of baseline ``name``: the registry's, DGD's step / momentum grids from ``eval.dgd_steps`` /
    ``eval.momentum_grid``, and any ``eval.grids`` entry on top."""
    grid = {k: list(v) for k, v in spec(name).grid.items()}
    if name in ("dgd", "dgd_momentum", "dsgd"):
        grid["step"] = list(cfg.eval.dgd_steps)
    if name == "dgd_momentum":
        grid["momentum"] = list(cfg.eval.momentum_grid)
    grid.update(cfg.eval.grids.get(name, {}))
    return grid


def context(family: ClassifierFamily, task: Any, repetition: int) -> Context:
    """The scenario context of one task and repetition (the star graph's server is never dropped)."""
    cfg = family.cfg
    return Context(cfg.seed, task.key, repetition, task.num_agents, SERVER if cfg.model.server else None,
                   cfg.topology.gso)


def baseline_curves(family: ClassifierFamily, name: str, task: Any, rounds: int, grid: dict[str, torch.Tensor],
                    batch: int | None, drops: BoundScenario | None = None, repetition: int = 0,
                    curve: bool = True, mixing: int = 1) -> Any:
    """One baseline on one task for every grid setting, under ``drops`` (repetition ``repetition``) if given;
    per-round metrics, or the last round's only (``curve=False``). ``mixing`` = K > 1: every round mixes with S^K
    (K rounds of plain S mixing per gradient step, on clean tasks: the K-hop analogue of a gossip method)."""
    cfg = family.cfg
    shift = family.shift_for(task) if mixing == 1 else shift_power(family.shift_for(task), mixing)
    schedule, mode = None, cfg.eval.async_mode
    if drops is not None:
        compiled = drops.schedule(context(family, task, repetition), shift)
        schedule = compiled.per_round(max(cfg.model.hops, 1)) if compiled is not None else None
        mode = drops.async_mode
    return run_baseline(name, task, shift, initial_weights(task, cfg.seed, cfg.model.w0_std), rounds, grid,
                        agents=family.data_agents(), schedule=schedule, async_mode=mode, seed=cfg.seed, batch=batch,
                        settings=baseline_settings(cfg), curve=curve)


def _mean_curves(family: ClassifierFamily, name: str, tasks: list, rounds: int, grid: dict[str, torch.Tensor],
                 batch: int | None, drops: BoundScenario | None = None, curve: bool = True, mixing: int = 1
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean held-out accuracy and loss over tasks for each grid setting: (G, rounds + 1) each, or (G, 1)."""
    acc, loss = 0.0, 0.0
    for task in tasks:
        curves = baseline_curves(family, name, task, rounds, grid, batch, drops, curve=curve, mixing=mixing)
        acc, loss = acc + curves.accuracy, loss + curves.loss
    return acc / len(tasks), loss / len(tasks)


def tune_baseline(family: ClassifierFamily, name: str, rounds: int, mixing: int = 1) -> dict[str, float]:
    """The grid setting maximizing mean final held-out accuracy on the (clean) validation tasks (``mixing``: see
    :func:`baseline_curves`)."""
    cfg = family.cfg
    lists = baseline_grid(cfg, name)
    grid = grid_product(lists)
    tasks = [family.task("val", i) for i in range(cfg.trainer.val_tasks)]

    def search() -> dict[str, float]:
        accuracy, _ = _mean_curves(family, name, tasks, rounds, grid, cfg.data.batch_size, curve=False,
                                   mixing=mixing)
        best = int(torch.nan_to_num(accuracy[:, -1], nan=-1.0).argmax())
        return {k: float(v[best]) for k, v in grid.items()}

    settings = {"baseline": name, "rounds": rounds, "mixing": mixing, "grid": lists, "batch": cfg.data.batch_size,
                "fixed": dataclasses.asdict(baseline_settings(cfg)), "seed": cfg.seed, "w0_std": cfg.model.w0_std,
                "server": cfg.model.server, "device": str(family.device)}
    return cached_tuning(settings, tasks, [family.shift_for(t) for t in tasks], search)


def choose_hyper(family: ClassifierFamily, name: str, rounds: int) -> tuple[dict[str, float], int | None, str]:
    """(hyper-parameters, mini-batch size, label): the paper's setting under ``eval.baseline_preset=paper`` where
    the paper states one, otherwise tuned on validation tasks."""
    method, cfg = spec(name), family.cfg
    batch = cfg.data.batch_size if method.stochastic else None
    if cfg.eval.baseline_preset == "paper" and method.paper:
        paper = dict(method.paper)
        batch = int(paper.pop("batch", batch)) if method.stochastic else None
        return paper, batch, f"paper preset ({method.paper_note})"
    label = "tuned on validation tasks" + (f" ({method.paper_note})" if cfg.eval.baseline_preset == "paper" else "")
    return tune_baseline(family, name, rounds), batch, label


def message_shape(family: ClassifierFamily, tasks: list) -> tuple[int, int]:
    """(directed edges, averaged over these tasks' graphs; floats per vector, (d+1) C)."""
    edges = round(sum(directed_edges(family.shift_for(t)) for t in tasks) / len(tasks))
    return edges, family.sampler.num_features * family.sampler.num_classes


def communication_cost(family: ClassifierFamily, name: str, rounds: int, tasks: list) -> Communication:
    """Nominal communication of baseline ``name`` on these tasks' graphs (mean directed-edge count)."""
    edges, floats = message_shape(family, tasks)
    cfg = family.cfg
    clients = cfg.num_agents - 1 if cfg.model.server else cfg.num_agents
    return Communication(**communication(name, rounds, edges, floats, clients, baseline_settings(cfg)).as_dict())


def evaluate_baseline(family: ClassifierFamily, name: str, tasks: list, relabelled: list, rounds: int,
                      drops: BoundScenario | None = None) -> Comparison:
    """Choose hyper-parameters (validation tasks or the paper preset), then report final and per-round held-out
    accuracy and loss on the meta-test tasks and their relabelled twins, with the communication it cost."""
    chosen, batch, label = choose_hyper(family, name, rounds)
    grid = {k: torch.tensor([v]) for k, v in chosen.items()}
    acc, loss = _mean_curves(family, name, tasks, rounds, grid, batch, drops)
    acc_relabelled, _ = _mean_curves(family, name, relabelled, rounds, grid, batch, drops)
    method = spec(name)
    hyper = dict(chosen)
    if batch is not None:
        hyper["batch"] = batch
    if method.local_steps:
        hyper["local_steps"] = family.cfg.eval.local_steps
    if method.star:
        hyper["clients_per_round"] = family.cfg.eval.clients_per_round
    final = {"accuracy": acc[0, -1].item(), "accuracy_relabelled": acc_relabelled[0, -1].item(),
             "loss": loss[0, -1].item()}
    return Comparison(final=final, per_step={"accuracy": acc[0].tolist(), "loss": loss[0].tolist()}, steps=rounds,
                      hyper={k: float(v) for k, v in hyper.items()}, preset=label, description=method.description,
                      communication=communication_cost(family, name, rounds, tasks))


def tune_dgd(family: ClassifierFamily, rounds: int, momentum: bool, mixing: int = 1) -> tuple[float, float]:
    """(step, momentum) of DGD / heavy-ball DGD tuned on the validation tasks (``mixing``: S^K per gradient step)."""
    chosen = tune_baseline(family, "dgd_momentum" if momentum else "dgd", rounds, mixing)
    return chosen["step"], chosen.get("momentum", 0.0)


def tune_classical_start(family: ClassifierFamily) -> WarmStart:
    """The heavy-ball DGD a model of L layers x K hops starts from (``model.warm_start=heavy_ball``), tuned on the
    validation tasks with ``eval.dgd_steps`` x ``eval.momentum_grid`` exactly as the evaluation tunes its baseline:

        W_l = S^K W_{l-1} - alpha grad f(W_{l-1}) + beta (W_{l-1} - W_{l-2}),    l = 1..L.

    K = 1: L rounds of heavy-ball DGD, the same call (and so the same alpha, beta) as the ``dgd_momentum`` baseline
    at the model's rounds. K > 1: its K-hop analogue, K rounds of plain S mixing per gradient step (multi-consensus
    heavy-ball; Berahas et al. 2019, NEAR-DGD^t), tuned the same way at L gradient steps of L x K rounds.
    """
    model = family.cfg.model
    step, momentum = tune_dgd(family, model.layers, momentum=True, mixing=model.hops)
    return WarmStart(method="heavy_ball", step=step, momentum=momentum, gradient_steps=model.layers,
                     mixing_rounds=model.hops)


def evaluate_baselines(family: ClassifierFamily, tasks: list, relabelled: list, rounds: int,
                       drops: BoundScenario | None = None) -> dict[str, Comparison]:
    """``eval.baselines`` at ``rounds``, ``eval.long_baselines`` at ``long_factor`` x rounds (``NAME_xF``), the
    centralized ceiling at ``eval.centralized_rounds``, and each one's accuracy relative to that ceiling."""
    cfg = family.cfg
    results = {}
    for name in cfg.eval.baselines:
        length = cfg.eval.centralized_rounds if name == "centralized" else rounds
        results[name] = evaluate_baseline(family, name, tasks, relabelled, length, drops)
    for name in cfg.eval.long_baselines:
        results[f"{name}_x{cfg.eval.long_factor}"] = evaluate_baseline(
            family, name, tasks, relabelled, rounds * cfg.eval.long_factor, drops)
    if "centralized" in results:
        ceiling = results["centralized"].final["accuracy"]
        for entry in results.values():
            entry.final["relative_accuracy"] = entry.final["accuracy"] / ceiling
    return results
