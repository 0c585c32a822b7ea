"""Meta-test evaluation: per-layer metrics of an unrolled model and tuned DGD references on the same tasks.

Every number is measured on held-out samples that no agent trained on, on the plain meta-test tasks and on their
relabelled twins (a fixed random class permutation per task): a model that memorized one classifier scores well
on the first and collapses on the second; a real optimizer scores the same on both.
"""

from __future__ import annotations

import torch

from surf.asynchrony import draw_active
from surf.baselines.dgd import run_dgd
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


def _dgd_curves(exp: Experiment, tasks: list, rounds: int, steps: torch.Tensor, momenta: torch.Tensor,
                n_async: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean held-out accuracy and loss per round over tasks for each grid setting: (G, rounds + 1) each."""
    cfg, agents = exp.cfg, exp.data_agents()
    acc, loss = 0.0, 0.0
    for task in tasks:
        def schedule(r: int, task=task) -> StepConditions:
            return StepConditions(active=draw_active(task.num_agents, n_async, cfg.seed, *task.key, "round", r, 0,
                                                     protect=_protected(exp)))

        curves = run_dgd(task, exp.shift_for(task), initial_weights(task, cfg.seed, cfg.model.w0_std), rounds,
                         steps, momenta, agents, schedule if n_async > 0 else None, cfg.eval.async_mode)
        acc, loss = acc + curves.accuracy, loss + curves.loss
    return acc / len(tasks), loss / len(tasks)


def tune_dgd(exp: Experiment, rounds: int, momentum: bool) -> tuple[float, float]:
    """Pick (step, momentum) maximizing mean final held-out accuracy on the validation tasks."""
    steps = torch.tensor(exp.cfg.eval.dgd_steps, dtype=torch.float64)
    momenta = torch.tensor(exp.cfg.eval.momentum_grid if momentum else [0.0], dtype=torch.float64)
    grid_steps, grid_momenta = (g.reshape(-1) for g in torch.meshgrid(steps, momenta, indexing="ij"))
    tasks = [exp.task("val", i) for i in range(exp.cfg.trainer.val_tasks)]
    accuracy, _ = _dgd_curves(exp, tasks, rounds, grid_steps.float(), grid_momenta.float())
    best = int(torch.nan_to_num(accuracy[:, -1], nan=-1.0).argmax())
    return float(grid_steps[best]), float(grid_momenta[best])


def evaluate_dgd(exp: Experiment, tasks: list, relabelled: list, rounds: int, momentum: bool,
                 n_async: int = 0) -> dict:
    """Tune on validation tasks, then report final and per-round accuracy on the meta-test tasks."""
    step, mu = tune_dgd(exp, rounds, momentum)
    steps, momenta = torch.tensor([step]), torch.tensor([mu])
    acc, loss = _dgd_curves(exp, tasks, rounds, steps, momenta, n_async)
    acc_relabelled, _ = _dgd_curves(exp, relabelled, rounds, steps, momenta, n_async)
    result = {
        "accuracy": acc[0, -1].item(),
        "accuracy_relabelled": acc_relabelled[0, -1].item(),
        "loss": loss[0, -1].item(),
        "rounds": rounds,
        "step_size": step,
        "per_round_accuracy": acc[0].tolist(),
        "per_round_loss": loss[0].tolist(),
    }
    if momentum:
        result["momentum"] = mu
    return result


def evaluate(exp: Experiment, model: UnrolledDGD, n_async: int | None = None) -> dict:
    """The meta-test report: SURF per layer (plain + relabelled) and tuned DGD / heavy-ball references."""
    cfg = exp.cfg
    n_async = cfg.eval.n_async if n_async is None else n_async
    tasks = [exp.task("test", i) for i in range(cfg.eval.test_tasks)]
    relabelled = [exp.task("test", i, relabel=True) for i in range(cfg.eval.test_tasks)]
    plain = evaluate_unrolled(exp, model, tasks, n_async)
    other = evaluate_unrolled(exp, model, relabelled, n_async)
    rounds = max(model.rounds, 1)
    baselines = {
        "dgd": evaluate_dgd(exp, tasks, relabelled, rounds, momentum=False, n_async=n_async),
        "dgd_momentum": evaluate_dgd(exp, tasks, relabelled, rounds, momentum=True, n_async=n_async),
        f"dgd_x{cfg.eval.long_factor}": evaluate_dgd(
            exp, tasks, relabelled, rounds * cfg.eval.long_factor, momentum=False, n_async=n_async
        ),
    }
    return {
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
        "baselines": baselines,
    }
