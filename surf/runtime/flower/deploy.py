"""``surf deploy RUN_DIR --runtime flower``: evaluate a trained model on meta-test tasks through Flower.

SURF and the baselines (DGD, heavy-ball DGD, DSGD; steps tuned on validation tasks by the vectorized engine) run
through the same relay, with the same agents per node, tasks, W_0 and dropped-agent schedule. Every message carries
all meta-test tasks (plain and relabelled) at once, so a layer costs K communication rounds whatever the number of
tasks. The summary has the layout of ``surf run`` plus a ``runtime`` section (accounting, drops, wall time).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch
import yaml

from surf.config import to_dict
from surf.data.shares import as_csr
from surf.evaluation.baselines import tune_dgd
from surf.evaluation.classifier import method_name
from surf.evaluation.summary import Comparison, Descent, Runtime, Summary
from surf.families.classifier.family import ClassifierFamily
from surf.models.features import extra_vectors
from surf.models.udgd import UnrolledDGD
from surf.runtime.flower.relay import Job, JobResult
from surf.scenarios.drops import dropped_agents
from surf.utils.errors import ConfigError


def check_decentralizable(exp: ClassifierFamily) -> None:
    """Refuse what cannot run as independent agents, with the fix in one line."""
    model = exp.cfg.model
    if model.variant == "paper" and model.batchnorm:
        raise ConfigError("model.batchnorm=true normalizes across agents (authors' code) and cannot run on separate "
                          "Flower nodes; deploy a compact model or a paper model trained with model.batchnorm=false")
    if model.server:
        raise ConfigError("model.server=true (star/FL mode) is not supported by the Flower runtime; use the "
                          "vectorized engine (surf eval) for star mode")
    if model.hops < 1:
        raise ConfigError("model.hops=0 has no communication to relay; use surf eval")
    if extra_vectors(model.features):
        raise ConfigError(f"model.features={model.features}: features that send extra messages (tracking, "
                          "neighbor_gradient) are not relayed by the Flower runtime yet; use the vectorized engine "
                          "(surf eval) or agent-local features only (adam)")


def _schedule(exp: ClassifierFamily, tasks: list, rounds_per_step: int) -> object | None:
    """Scheduled drops as in ``surf eval`` (repetition 0; ``surf.scenarios.drops``): (N, T) inactive agents at
    relay step t, which is layer t for SURF and round t of a baseline (reading layer ``ceil(t / K)``)."""
    cfg = exp.cfg
    if cfg.eval.n_async == 0:
        return None

    def inactive(step: int) -> torch.Tensor:
        layer = -(-step // rounds_per_step)
        return torch.stack([dropped_agents(cfg.num_agents, cfg.eval.n_async, cfg.seed, task.key, layer)
                            for task in tasks], dim=1)

    return inactive


BASELINES = ("dgd", "dgd_momentum", "dsgd")  # the baselines that run through the relay


def deploy_jobs(exp: ClassifierFamily, model: UnrolledDGD, nodes: int, num_tasks: int,
                round_timeout: float | None = None, baselines: tuple[str, ...] = BASELINES,
                **options: object) -> tuple[list[Job], dict]:
    """The SURF job and the ``baselines`` jobs for the first ``num_tasks`` meta-test tasks (plus their relabelled
    twins) on ``nodes`` shards of agents; ``options`` are further :class:`Job` fields (prime, rejoin, ...)."""
    check_decentralizable(exp)
    cfg = exp.cfg
    keys = [("test", i, relabel) for relabel in (False, True) for i in range(num_tasks)]
    tasks = [SimpleNamespace(key=(split, index)) for split, index, _ in keys]  # the schedule needs the keys only
    shift = as_csr(exp.shift_for(tasks[0]))
    common = {"config_yaml": yaml.safe_dump(to_dict(cfg)), "shift": shift, "tasks": keys, "nodes": nodes,
              "async_mode": cfg.eval.async_mode, "round_timeout": round_timeout, **options}
    theta = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    rounds = model.rounds
    jobs = [Job("surf", method="surf", theta=theta, steps=cfg.model.layers, hops=cfg.model.hops,
                inactive=_schedule(exp, tasks, 1), **common)]
    steps, tuned = {}, {}
    for name, method, momentum in (("dgd", "dgd", False), ("dgd_momentum", "dgd", True), ("dsgd", "dsgd", False)):
        if name not in baselines:
            continue
        if momentum not in tuned:
            tuned[momentum] = tune_dgd(exp, rounds, momentum)
        step, mu = tuned[momentum] if name != "dsgd" else (tuned[momentum][0], 0.0)
        steps[name] = (step, mu)
        jobs.append(Job(name, method=method, steps=rounds, step_size=step, momentum=mu,
                        inactive=_schedule(exp, tasks, max(cfg.model.hops, 1)), **common))
    return jobs, steps


def _split(values: torch.Tensor, num_tasks: int) -> tuple[list[float], list[float]]:
    """(steps + 1, 2T) -> mean over the plain tasks and over the relabelled twins, per step."""
    return values[:, :num_tasks].mean(1).tolist(), values[:, num_tasks:].mean(1).tolist()


def summarize(exp: ClassifierFamily, jobs: list[Job], results: list[JobResult], steps: dict, wall: float,
              runtime: str = "flower", backend: str = "ray", num_actors: int = 0) -> Summary:
    """A ``surf run``-style summary from the relayed results, plus the runtime's accounting, drops and faults."""
    cfg = exp.cfg
    num_tasks = len(jobs[0].tasks) // 2
    surf = results[0]
    per, rel = {}, {}
    for metric, values in (("accuracy", surf.accuracy), ("loss", surf.loss), ("grad_norm", surf.grad_norm)):
        per[metric], rel[metric] = _split(values, num_tasks)
    norms = surf.grad_norm[:, :num_tasks]
    comparisons = {}
    for job, result in zip(jobs[1:], results[1:], strict=True):
        acc, acc_rel = _split(result.accuracy, num_tasks)
        loss, _ = _split(result.loss, num_tasks)
        step, momentum = steps[job.name]
        comparisons[job.name] = Comparison(
            final={"accuracy": acc[-1], "accuracy_relabelled": acc_rel[-1], "loss": loss[-1]},
            per_step={"accuracy": acc, "loss": loss}, steps=job.steps,
            hyper={"step": step, **({"momentum": momentum} if job.name == "dgd_momentum" else {})},
            preset="tuned on validation tasks (vectorized engine)", description=f"{job.method} through the relay")
    final = {"accuracy": per["accuracy"][-1], "loss": per["loss"][-1], "accuracy_relabelled": rel["accuracy"][-1],
             "accuracy_std": surf.accuracy[-1, :num_tasks].std().item() if num_tasks > 1 else 0.0}
    nodes = jobs[0].nodes
    info = Runtime(
        name=runtime, backend=backend, agents_per_node=-(-cfg.num_agents // nodes), nodes=nodes,
        ray_actors=num_actors, wall_seconds=wall,
        jobs={job.name: {"seconds": result.seconds, "scheduled_drops": result.scheduled_drops,
                         "dropped": result.dropped, "faults": result.faults, "unreported_agents": result.unreported,
                         "nodes": result.audit, "communication": result.ledger.summary()}
              for job, result in zip(jobs, results, strict=True)})
    return Summary(
        family=cfg.family, kind="deploy", method=method_name(exp), layers=cfg.model.layers,
        rounds=cfg.model.layers * cfg.model.hops, final=final, per_layer=per, per_layer_relabelled=rel,
        descent=Descent(grad_norm_decrease_fraction=(norms[1:] < norms[:-1]).float().mean().item()),
        eval={"test_tasks": num_tasks, "n_async": cfg.eval.n_async, "async_mode": cfg.eval.async_mode},
        comparisons=comparisons, runtime=info)


def check_request(exp: ClassifierFamily, nodes: int, num_tasks: int) -> None:
    """One-line errors for impossible node or task counts (before anything starts)."""
    check_decentralizable(exp)
    if not 1 <= nodes <= exp.cfg.num_agents:
        raise ConfigError(f"{nodes} nodes for {exp.cfg.num_agents} agents: use --nodes (or --agents-per-node) "
                          f"between 1 and {exp.cfg.num_agents}")
    if not 1 <= num_tasks <= exp.cfg.eval.test_tasks:
        raise ConfigError(f"--tasks={num_tasks} must be in [1, eval.test_tasks={exp.cfg.eval.test_tasks}]")


def deploy(exp: ClassifierFamily, model: UnrolledDGD, agents_per_node: int, num_tasks: int,
           round_timeout: float | None = None, num_actors: int = 2,
           baselines: tuple[str, ...] = BASELINES) -> Summary:
    """Run SURF and the baselines through Flower (Ray simulation engine) and summarize."""
    from surf.runtime.flower.simulation import run_jobs

    if not 1 <= agents_per_node <= exp.cfg.num_agents:  # more than N ran as one node of N: say what runs
        raise ConfigError(f"--agents-per-node={agents_per_node} must be in [1, num_agents={exp.cfg.num_agents}]")
    nodes = -(-exp.cfg.num_agents // agents_per_node)
    check_request(exp, nodes, num_tasks)
    jobs, steps = deploy_jobs(exp, model, nodes, num_tasks, round_timeout, baselines)
    start = time.perf_counter()
    results = run_jobs(jobs, num_actors=num_actors)
    return summarize(exp, jobs, results, steps, time.perf_counter() - start, "flower", "ray", num_actors)
