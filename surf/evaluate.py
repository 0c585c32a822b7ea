"""Meta-test evaluation: per-layer metrics of an unrolled model and tuned baselines on the same tasks.

Every number is measured on held-out samples that no agent trained on, on the plain meta-test tasks and on their
relabelled twins (a fixed random class permutation per task): a model that memorized one classifier scores well
on the first and collapses on the second; a real optimizer scores the same on both.
"""

from __future__ import annotations

import torch

from surf.asynchrony import draw_active
from surf.baselines import Settings, communication, grid_product, run_baseline, spec
from surf.comm import directed_edges, unrolled_cost
from surf.constraints import gradient_norms
from surf.experiment import Experiment
from surf.network import StepConditions
from surf.problems.softmax import agent_accuracies, agent_losses
from surf.unrolled import SERVER, UnrolledDGD, initial_weights


def _protected(exp: Experiment) -> int | None:
    return SERVER if exp.cfg.model.server else None


def _masked_mean(values: torch.Tensor, agents: torch.Tensor | None) -> float:
    return (values[..., agents] if agents is not None else values).mean().item()


@torch.no_grad()
def evaluate_unrolled(exp: Experiment, model: UnrolledDGD, tasks: list, n_async: int = 0) -> dict:
    """Per-layer held-out accuracy/loss and full-local-gradient norm, averaged over tasks and drop repetitions."""
    model.eval()
    cfg, agents = exp.cfg, exp.data_agents()
    repeats = cfg.eval.async_repeats if n_async > 0 else 1
    acc, loss, norms, finals = [], [], [], []
    for task in tasks:
        for rep in range(repeats):
            schedule = None
            if n_async > 0:
                def schedule(layer: int, task=task, rep=rep) -> StepConditions:
                    return StepConditions(active=draw_active(task.num_agents, n_async, cfg.seed, *task.key, "layer",
                                                             layer, rep, protect=_protected(exp)))
            trajectory = model(task, exp.shift_for(task), cfg.seed, schedule, cfg.eval.async_mode)
            w = torch.stack(trajectory.weights)
            acc.append([_masked_mean(a, agents) for a in agent_accuracies(w, task.x_test, task.y_test)])
            loss.append([_masked_mean(v, agents) for v in agent_losses(w, task.x_test, task.y_test)])
            norms.append(gradient_norms(trajectory, task, "full", cfg.seed, agents))
            finals.append(acc[-1][-1])
    norms_t = torch.stack(norms)
    decreasing = (norms_t[:, 1:] < norms_t[:, :-1]).float().mean().item()
    return {
        "accuracy": torch.tensor(acc).mean(0).tolist(),
        "loss": torch.tensor(loss).mean(0).tolist(),
        "grad_norm": norms_t.mean(0).tolist(),
        "descent_fraction": decreasing,  # share of (task, layer) pairs whose full-gradient norm decreased
        "final_accuracy_std": torch.tensor(finals).std().item() if len(finals) > 1 else 0.0,
    }


def baseline_settings(cfg) -> Settings:
    """The fixed (untuned) settings of the local-step and server-client baselines."""
    return Settings(local_steps=cfg.eval.local_steps, clients_per_round=cfg.eval.clients_per_round)


def baseline_grid(cfg, name: str) -> dict[str, list[float]]:
    """The tuning grid of baseline ``name``: the registry's, DGD's step / momentum grids from ``eval.dgd_steps`` /
    ``eval.momentum_grid``, and any ``eval.grids`` entry on top."""
    grid = {k: list(v) for k, v in spec(name).grid.items()}
    if name in ("dgd", "dgd_momentum", "dsgd"):
        grid["step"] = list(cfg.eval.dgd_steps)
    if name == "dgd_momentum":
        grid["momentum"] = list(cfg.eval.momentum_grid)
    grid.update(cfg.eval.grids.get(name, {}))
    return grid


def _curves(exp: Experiment, name: str, tasks: list, rounds: int, grid: dict[str, torch.Tensor],
            batch: int | None, n_async: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean held-out accuracy and loss per round over tasks for each grid setting: (G, rounds + 1) each."""
    cfg, agents = exp.cfg, exp.data_agents()
    acc, loss = 0.0, 0.0
    for task in tasks:
        def schedule(r: int, task=task) -> StepConditions:
            return StepConditions(active=draw_active(task.num_agents, n_async, cfg.seed, *task.key, "round", r, 0,
                                                     protect=_protected(exp)))

        curves = run_baseline(name, task, exp.shift_for(task), initial_weights(task, cfg.seed, cfg.model.w0_std),
                              rounds, grid, agents=agents, schedule=schedule if n_async > 0 else None,
                              async_mode=cfg.eval.async_mode, seed=cfg.seed, batch=batch,
                              settings=baseline_settings(cfg))
        acc, loss = acc + curves.accuracy, loss + curves.loss
    return acc / len(tasks), loss / len(tasks)


def tune_baseline(exp: Experiment, name: str, rounds: int) -> dict[str, float]:
    """The grid setting maximizing mean final held-out accuracy on the validation tasks."""
    grid = grid_product(baseline_grid(exp.cfg, name))
    tasks = [exp.task("val", i) for i in range(exp.cfg.trainer.val_tasks)]
    accuracy, _ = _curves(exp, name, tasks, rounds, grid, exp.cfg.data.batch_size)
    best = int(torch.nan_to_num(accuracy[:, -1], nan=-1.0).argmax())
    return {k: float(v[best]) for k, v in grid.items()}


def choose_hyper(exp: Experiment, name: str, rounds: int) -> tuple[dict[str, float], int | None, str]:
    """(hyper-parameters, mini-batch size, label): the paper's setting under ``eval.baseline_preset=paper`` where
    the paper states one, otherwise tuned on validation tasks."""
    method, cfg = spec(name), exp.cfg
    batch = cfg.data.batch_size if method.stochastic else None
    if cfg.eval.baseline_preset == "paper" and method.paper:
        paper = dict(method.paper)
        batch = int(paper.pop("batch", batch)) if method.stochastic else None
        return paper, batch, f"paper preset ({method.paper_note})"
    label = "tuned on validation tasks" + (f" ({method.paper_note})" if cfg.eval.baseline_preset == "paper" else "")
    return tune_baseline(exp, name, rounds), batch, label


def communication_cost(exp: Experiment, name: str, rounds: int, tasks: list) -> dict[str, int]:
    """Nominal communication of baseline ``name`` on these tasks' graphs (mean directed-edge count)."""
    edges = round(sum(directed_edges(exp.shift_for(t)) for t in tasks) / len(tasks))
    floats = exp.sampler.num_features * exp.sampler.num_classes
    clients = exp.cfg.num_agents - 1 if exp.cfg.model.server else exp.cfg.num_agents
    return communication(name, rounds, edges, floats, clients, baseline_settings(exp.cfg)).as_dict()


def evaluate_baseline(exp: Experiment, name: str, tasks: list, relabelled: list, rounds: int,
                      n_async: int = 0) -> dict:
    """Choose hyper-parameters (validation tasks or the paper preset), then report final and per-round held-out
    accuracy and loss on the meta-test tasks and their relabelled twins, with the communication it cost."""
    chosen, batch, label = choose_hyper(exp, name, rounds)
    grid = {k: torch.tensor([v]) for k, v in chosen.items()}
    acc, loss = _curves(exp, name, tasks, rounds, grid, batch, n_async)
    acc_relabelled, _ = _curves(exp, name, relabelled, rounds, grid, batch, n_async)
    method = spec(name)
    hyper = dict(chosen)
    if batch is not None:
        hyper["batch"] = batch
    if method.star or name == "dfedavgm":
        hyper["local_steps"] = exp.cfg.eval.local_steps
    if method.star:
        hyper["clients_per_round"] = exp.cfg.eval.clients_per_round
    result = {
        "accuracy": acc[0, -1].item(),
        "accuracy_relabelled": acc_relabelled[0, -1].item(),
        "loss": loss[0, -1].item(),
        "rounds": rounds,
        "step_size": chosen["step"],
        "per_round_accuracy": acc[0].tolist(),
        "per_round_loss": loss[0].tolist(),
        "hyper": hyper,
        "preset": label,
        "description": method.description,
        "communication": communication_cost(exp, name, rounds, tasks),
    }
    if "momentum" in chosen:
        result["momentum"] = chosen["momentum"]
    return result


def tune_dgd(exp: Experiment, rounds: int, momentum: bool) -> tuple[float, float]:
    """(step, momentum) of DGD / heavy-ball DGD tuned on the validation tasks."""
    chosen = tune_baseline(exp, "dgd_momentum" if momentum else "dgd", rounds)
    return chosen["step"], chosen.get("momentum", 0.0)


def evaluate_baselines(exp: Experiment, tasks: list, relabelled: list, rounds: int, n_async: int = 0) -> dict:
    """``eval.baselines`` at ``rounds``, ``eval.long_baselines`` at ``long_factor`` x rounds (``NAME_xF``), the
    centralized ceiling at ``eval.centralized_rounds``, and each one's accuracy relative to that ceiling."""
    cfg = exp.cfg
    results = {}
    for name in cfg.eval.baselines:
        length = cfg.eval.centralized_rounds if name == "centralized" else rounds
        results[name] = evaluate_baseline(exp, name, tasks, relabelled, length, n_async)
    for name in cfg.eval.long_baselines:
        results[f"{name}_x{cfg.eval.long_factor}"] = evaluate_baseline(
            exp, name, tasks, relabelled, rounds * cfg.eval.long_factor, n_async)
    if "centralized" in results:
        ceiling = results["centralized"]["accuracy"]
        for entry in results.values():
            entry["relative_accuracy"] = entry["accuracy"] / ceiling
    return results


def evaluate(exp: Experiment, model: UnrolledDGD, n_async: int | None = None) -> dict:
    """The meta-test report: SURF per layer (plain + relabelled) and tuned DGD / heavy-ball references."""
    cfg = exp.cfg
    n_async = cfg.eval.n_async if n_async is None else n_async
    tasks = [exp.task("test", i) for i in range(cfg.eval.test_tasks)]
    relabelled = [exp.task("test", i, relabel=True) for i in range(cfg.eval.test_tasks)]
    plain = evaluate_unrolled(exp, model, tasks, n_async)
    other = evaluate_unrolled(exp, model, relabelled, n_async)
    rounds = max(model.rounds, 1)
    baselines = evaluate_baselines(exp, tasks, relabelled, rounds, n_async)
    edges = round(sum(directed_edges(exp.shift_for(t)) for t in tasks) / len(tasks))
    floats = exp.sampler.num_features * exp.sampler.num_classes
    summary = {
        "method": "unrolling" if cfg.constraints.kind == "none" else "surf",
        "rounds": model.rounds,
        "final": {
            "accuracy": plain["accuracy"][-1],
            "loss": plain["loss"][-1],
            "accuracy_relabelled": other["accuracy"][-1],
            "accuracy_std": plain["final_accuracy_std"],
        },
        "per_layer": {k: plain[k] for k in ("accuracy", "loss", "grad_norm")},
        "per_layer_relabelled": {k: other[k] for k in ("accuracy", "loss", "grad_norm")},
        "descent_fraction": plain["descent_fraction"],
        "eval": {"test_tasks": cfg.eval.test_tasks, "n_async": n_async, "async_mode": cfg.eval.async_mode},
        "communication": unrolled_cost(cfg.model.layers, cfg.model.hops, edges, floats).as_dict(),
        "baselines": baselines,
    }
    if "centralized" in baselines:
        summary["relative_accuracy"] = plain["accuracy"][-1] / baselines["centralized"]["accuracy"]
    return summary
