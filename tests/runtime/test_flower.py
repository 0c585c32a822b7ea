"""Flower runtime on the Ray simulation engine: per-layer models equal the vectorized engine's (1e-5), with and
without dropped agents, for several shardings, with the run-time safeguard on (each node guards its own agents);
a ClientApp that raises is dropped and the run completes.

One Flower simulation (one Ray start) runs every job; the tests read its results.
"""

import os
import subprocess
import sys

import pytest
import torch
import yaml

from surf.baselines.dgd import run_dgd
from surf.config import from_dict, to_dict
from surf.data.batches import initial_weights
from surf.families.classifier.family import ClassifierFamily
from surf.graphs.network import StepConditions
from surf.runtime.flower.accounting import Ledger
from surf.runtime.flower.deploy import check_decentralizable, deploy_jobs, summarize
from surf.runtime.flower.node import ShardSpec
from surf.runtime.flower.relay import Job
from surf.scenarios.drops import dropped_agents
from surf.scenarios.scenario import dropped_agents_scenario
from surf.utils.errors import ConfigError
from tests.conftest import REPO, assert_valid

N, LAYERS, HOPS, N_ASYNC, FAULTY_AGENT, FAULTY_LAYER = 12, 3, 2, 3, 5, 2
TASKS = [("test", 0, False), ("test", 1, True)]


def _config(features=(), safeguard="loss"):
    return from_dict({
        "num_agents": N, "threads": 1, "device": "cpu", "topology": {"name": "example_ring12"},
        "data": {"source": "gaussian", "gaussian_dim": 6, "gaussian_classes": 4, "gaussian_samples": 2000,
                 "train_per_agent": 12, "test_per_agent": 5, "batch_size": 4},
        "model": {"layers": LAYERS, "hops": HOPS, "w0_std": 0.5, "hidden": 8, "safeguard": safeguard,
                  "features": list(features)},
    })


def fault(message, context, call_next):
    """Flower mod: the node holding FAULTY_AGENT raises at hop 1 of FAULTY_LAYER in the job named 'fault'."""
    if message.metadata.message_type == "train.hop":
        spec = ShardSpec.from_json(context.state["spec"]["spec"])
        hop = message.content["hop"]
        if spec.job == "fault" and FAULTY_AGENT in spec.agents and hop["layer"] == FAULTY_LAYER and hop["k"] == 1:
            raise RuntimeError("injected failure")
    return call_next(message, context)


class Setup:
    def __init__(self, features=(), safeguard="loss"):
        self.cfg = _config(features, safeguard)
        self.exp = ClassifierFamily(self.cfg)
        torch.manual_seed(0)  # the MLP's first layer is drawn from the global generator: the same model every run
        self.model = self.exp.build_model()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a non-trivial model: every MLP weight and tap away from its initial value
            for p in self.model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
        self.tasks = [self.exp.task(s, i, relabel=r) for s, i, r in TASKS]
        self.shift = self.exp.shift_for(self.tasks[0])
        self.yaml = yaml.safe_dump(to_dict(self.cfg))
        self.dropping = ClassifierFamily(from_dict(to_dict(self.cfg), ["eval.n_async=2", "trainer.val_tasks=4"]))

    def active(self, task, layer):
        return ~dropped_agents(N, N_ASYNC, self.cfg.seed, task.key, layer)

    def inactive(self, layer):
        return torch.stack([~self.active(t, layer) for t in self.tasks], dim=1)

    def reference(self, drops, mode="stale"):
        """The vectorized engine's W_0..W_L, stacked like the runtime's history: (L+1, N, T, d+1, C)."""
        out = []
        for task in self.tasks:
            schedule = (lambda layer, task=task: StepConditions(active=self.active(task, layer))) if drops else None
            with torch.no_grad():
                out.append(torch.stack(self.model(task, self.shift, self.cfg.seed, schedule, mode).weights))
        return torch.stack(out, dim=2)

    def job(self, name, per_node, drops=False, mode="stale", method="surf", **kw):
        theta = self.model.state_dict() if method == "surf" else None
        steps = LAYERS if method == "surf" else 4
        hops = HOPS if method == "surf" else 1
        return Job(name, self.yaml, self.shift.to_dense(), method, TASKS, -(-N // per_node), theta=theta,
                   steps=steps, hops=hops, inactive=self.inactive if drops else None, async_mode=mode,
                   keep_history=True, **kw)


SHARDINGS = [(1, False), (1, True), (3, False), (3, True), (N, False), (N, True)]


@pytest.fixture(scope="module")
def flower():
    from surf.runtime.flower.simulation import run_jobs

    setup = Setup()
    jobs = [setup.job(f"surf-{m}-{d}", m, d) for m, d in SHARDINGS]
    jobs.append(setup.job("zero", 3, drops=True, mode="zero"))
    jobs.append(setup.job("dgd", 4, method="dgd", step_size=0.3, momentum=0.5))
    jobs.append(setup.job("dsgd", N, method="dsgd", step_size=0.3))
    jobs.append(setup.job("fault", 1))
    setup.local = Setup(["adam", "catch_up"], safeguard="none")  # every agent takes the learned step: features decide
    jobs.append(setup.local.job("local_features", 3, drops=True))
    deployed, setup.deploy_steps = deploy_jobs(setup.dropping, setup.model, 3, num_tasks=2)
    results = run_jobs(jobs + deployed, client_mods=[fault])
    setup.deploy = (deployed, results[len(jobs):])
    return setup, {job.name: result for job, result in zip(jobs, results[: len(jobs)], strict=True)}


def test_the_safeguard_is_exercised(flower):
    """The non-trivial model's learned step loses to heavy-ball for some agents: the equality covers both branches."""
    setup, _ = flower
    with torch.no_grad():
        trajectory = setup.model(setup.tasks[0], setup.shift, setup.cfg.seed)
    fallbacks = torch.stack(trajectory.fallbacks)
    assert fallbacks.any() and not fallbacks.all()


@pytest.mark.parametrize("per_node,drops", SHARDINGS)
def test_flower_layers_equal_vectorized_engine(flower, per_node, drops):
    setup, results = flower
    result = results[f"surf-{per_node}-{drops}"]
    assert (result.history - setup.reference(drops)).abs().max().item() < 1e-5
    assert result.dropped == []
    assert result.scheduled_drops == (N_ASYNC * LAYERS * len(TASKS) if drops else 0)


def test_agent_local_features_equal_vectorized_engine(flower):
    """``model.features: [adam, catch_up]``: each node keeps its agents' second moments and last layers run, frozen
    while they are dropped (an agent dropped at layer 1 is back at layer 2 with a different second moment and a
    non-zero catch-up gradient)."""
    setup, results = flower
    local = setup.local
    reference = local.reference(True)
    assert (results["local_features"].history - reference).abs().max().item() < 1e-5
    for column in (4, 5):  # the adam and catch_up features' input weights
        weights = [step.mlp[0].weight[:, column].clone() for step in local.model.steps]
        with torch.no_grad():
            for step in local.model.steps:
                step.mlp[0].weight[:, column] = 0
            without = local.reference(True)
            for step, weight in zip(local.model.steps, weights, strict=True):
                step.mlp[0].weight[:, column] = weight
        assert (without - reference).abs().max().item() > 1e-3  # the feature matters in this comparison


def test_zero_mode_and_messages_counted(flower):
    setup, results = flower
    assert (results["zero"].history - setup.reference(True, "zero")).abs().max().item() < 1e-5
    ledger = results["surf-1-False"].ledger.summary()
    edges = int((setup.shift.to_dense() > 0).sum()) - N  # directed graph edges without self-loops
    assert ledger["communication_rounds"] == LAYERS * HOPS
    assert ledger["messages"] == edges * LAYERS * HOPS  # every neighbour message of every hop, once
    assert ledger["bytes"] == ledger["messages"] * len(TASKS) * 7 * 4 * 4  # raw float32 (T, d+1, C) rows, packed
    assert results["surf-12-False"].ledger.summary()["messages"] == 0  # one node: nothing leaves it


def test_dgd_over_flower_equals_vectorized_dgd(flower):
    setup, results = flower
    for t, task in enumerate(setup.tasks):
        w0 = initial_weights(task, setup.cfg.seed, setup.cfg.model.w0_std)
        curves = run_dgd(task, setup.shift, w0, 4, torch.tensor([0.3]), torch.tensor([0.5]))
        assert torch.allclose(results["dgd"].loss[:, t], curves.loss[0], atol=1e-5)
    assert torch.isfinite(results["dsgd"].loss).all()
    assert not torch.allclose(results["dsgd"].loss, results["dgd"].loss)


def test_failing_client_is_dropped_and_run_completes(flower):
    setup, results = flower
    result = results["fault"]
    assert [(d["step"], d["agents"]) for d in result.dropped] == [(FAULTY_LAYER, [FAULTY_AGENT])]
    assert "injected failure" in result.dropped[0]["reason"]
    history = result.history
    assert torch.equal(history[FAULTY_LAYER, FAULTY_AGENT], history[FAULTY_LAYER - 1, FAULTY_AGENT])
    assert not torch.equal(history[FAULTY_LAYER + 1, FAULTY_AGENT], history[FAULTY_LAYER, FAULTY_AGENT])
    reference = setup.reference(False)
    assert torch.allclose(history[FAULTY_LAYER - 1], reference[FAULTY_LAYER - 1], atol=1e-5)
    assert torch.isfinite(result.accuracy).all()


def test_ledger_totals():
    ledger = Ledger()
    ledger.add(0, 0, 1, 100, 3)  # three agents' messages packed in one array
    ledger.add(0, 0, 1, 50)
    ledger.add(1, 1, 0, 10)
    ledger.close_round("hop", 1, 1, 0.5, 7)
    ledger.close_round("hop", 1, 2, 1.5, 3)
    summary = ledger.summary()
    assert (summary["messages"], summary["bytes"], summary["uplink_bytes"]) == (5, 160, 10)
    assert summary["per_edge"] == [{"src": 0, "dst": 1, "messages": 4, "bytes": 150},
                                   {"src": 1, "dst": 0, "messages": 1, "bytes": 10}]
    assert summary["seconds_per_round"] == 1.0


def test_deploy_summary_matches_vectorized_evaluation(flower):
    """surf deploy's jobs (SURF + tuned DGD, heavy-ball, DSGD; 2 dropped agents per layer) through the relay."""
    from surf.evaluation.classifier import evaluate_unrolled

    setup, _ = flower
    jobs, results = setup.deploy
    summary = summarize(setup.dropping, jobs, results, setup.deploy_steps, 1.0, "flower", "ray", 2)
    exp = setup.dropping
    drops = dropped_agents_scenario(2, exp.cfg.eval.async_mode)
    plain = evaluate_unrolled(exp, setup.model, [exp.task("test", i) for i in range(2)], drops)
    assert summary.per_layer["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-5)
    assert summary.per_layer["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-4)
    assert set(summary.comparisons) == {"dgd", "dgd_momentum", "dsgd"}
    assert summary.comparisons["dgd"].steps == LAYERS * HOPS
    runtime = summary.runtime
    assert runtime.nodes == 3 and runtime.jobs["surf"]["scheduled_drops"] == 2 * LAYERS * 4
    assert runtime.jobs["surf"]["communication"]["messages"] > 0
    assert_valid(summary.to_dict())


def test_batchnorm_across_agents_is_refused():
    cfg = from_dict(to_dict(_config()), ["model.variant=paper", "model.batchnorm=true", "model.safeguard=none"])
    with pytest.raises(ConfigError, match="batchnorm"):
        check_decentralizable(ClassifierFamily(cfg))


@pytest.mark.parametrize("feature", ["tracking", "neighbor_gradient"])
def test_features_that_send_extra_messages_are_refused(feature):
    check_decentralizable(ClassifierFamily(_config(["adam"])))  # agent-local: runs (test above)
    with pytest.raises(ConfigError, match="extra messages"):
        check_decentralizable(ClassifierFamily(_config([feature])))


def test_deploy_cli_errors_are_one_line(tmp_path, capsys):
    from surf.app.cli import main

    assert main(["deploy", str(tmp_path), "--scenario", "lost:3"]) == 2
    assert "expected dropped:K" in capsys.readouterr().err
    assert main(["deploy", str(tmp_path)]) == 2
    assert "no trained model" in capsys.readouterr().err


def test_the_simulation_starts_without_warnings():
    """Ray warned about CUDA_VISIBLE_DEVICES (a FutureWarning) on every `surf deploy`; torch about sparse CSR for a
    job on a dense graph."""
    code = ("import torch; from surf.runtime.flower.relay import Job; "
            "from surf.runtime.flower.simulation import run_jobs; "
            "run_jobs([Job('echo', '', torch.eye(2), 'echo', [], 2, steps=1, hops=1)])")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"}  # a test may have set it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Warning" not in out.stderr, out.stderr[-2000:]
