"""Evaluation wiring: configured baselines in ``Summary.comparisons`` with hyper-parameters, communication and the
centralized ceiling; the paper preset; config validation of baseline names; the CLI table and the plot."""

import dataclasses

import pytest
import torch

from surf.app.registry import config_from_dict
from surf.evaluation.baselines import baseline_grid, evaluate_baselines, tune_dgd
from surf.evaluation.classifier import evaluate
from surf.families.classifier.family import ClassifierFamily
from surf.reporting.run_plots import plot_communication
from surf.reporting.tables import format_table
from surf.utils.errors import ConfigError
from tests.conftest import assert_valid

TINY = ["num_agents=6", "data.train_per_agent=6", "data.test_per_agent=3", "data.batch_size=3", "model.layers=2",
        "model.hops=1", "trainer.val_tasks=2", "eval.test_tasks=2", "eval.long_factor=2", "threads=1",
        "eval.centralized_rounds=3", "eval.local_steps=2", "eval.clients_per_round=2"]
SMALL_GRIDS = "eval.grids={dfedavgm: {step: [0.1], momentum: [0.0, 0.5]}, centralized: {step: [0.3, 1], momentum: [0]}}"


def _family(*extra: str) -> ClassifierFamily:
    return ClassifierFamily(config_from_dict({}, TINY + [SMALL_GRIDS, *extra]))


def _tasks(family):
    n = family.cfg.eval.test_tasks
    return [family.task("test", i) for i in range(n)], [family.task("test", i, relabel=True) for i in range(n)]


def test_gossip_baselines_report_hyper_communication_and_relative_accuracy():
    family = _family("topology.name=ring", "eval.baselines=[dgd, dsgd, dfedavgm, diging, extra, centralized]",
                     "eval.long_baselines=[extra]")
    results = evaluate_baselines(family, *_tasks(family), rounds=2)
    assert set(results) == {"dgd", "dsgd", "dfedavgm", "diging", "extra", "centralized", "extra_x2"}
    floats = 65 * 10  # digits: 64 features + bias, 10 classes
    for entry in results.values():
        assert {"accuracy", "accuracy_relabelled", "loss", "relative_accuracy"} <= set(entry.final)
        assert len(entry.per_step["accuracy"]) == entry.steps + 1 == len(entry.per_step["loss"])
        assert "step" in entry.hyper and entry.communication is not None
    assert results["centralized"].steps == 3 and results["centralized"].final["relative_accuracy"] == 1.0
    assert results["centralized"].communication.bytes == 0
    assert results["extra_x2"].steps == 4
    # ring of 6: 12 directed links, one vector each (DIGing: two), 4 bytes per float
    assert results["dgd"].communication.bytes_per_round == 12 * floats * 4
    assert results["diging"].communication.bytes == 2 * 2 * 12 * floats * 4
    assert results["dsgd"].hyper["batch"] == 3 and results["dfedavgm"].hyper["local_steps"] == 2
    assert results["dfedavgm"].hyper["momentum"] in (0.0, 0.5)


def test_star_baselines_and_paper_preset():
    family = _family("topology.name=star", "topology.gso=lambda_max", "model.server=true",
                     "eval.baselines=[fedavg, scaffold, dgd, dfedavgm]", "eval.long_baselines=[]",
                     "eval.baseline_preset=paper")
    results = evaluate_baselines(family, *_tasks(family), rounds=2)
    assert results["fedavg"].hyper["clients_per_round"] == 2
    assert results["fedavg"].communication.messages_per_round == 2 + 5  # 2 uploads, broadcast to 5 clients
    assert results["scaffold"].communication.bytes_per_round == 2 * 7 * 650 * 4
    assert results["dgd"].hyper["step"] == 10.0 and results["dgd"].preset.startswith("paper preset")
    assert results["dfedavgm"].hyper == {"step": 0.1, "momentum": 0.0, "batch": 3, "local_steps": 2}
    assert results["fedavg"].preset.startswith("tuned")  # the paper states no FedAvg step


def test_default_grids_follow_the_dgd_config_fields():
    cfg = config_from_dict({}, ["eval.dgd_steps=[0.5]", "eval.momentum_grid=[0.9]",
                                "eval.grids={dgd_momentum: {momentum: [0.1, 0.2]}}"])
    assert baseline_grid(cfg, "dgd") == {"step": [0.5]}
    assert baseline_grid(cfg, "dgd_momentum") == {"step": [0.5], "momentum": [0.1, 0.2]}


@pytest.mark.parametrize("override, message", [
    ("eval.baselines=[dgd, adam]", "unknown baseline 'adam' (valid: dgd"),
    ("eval.long_baselines=[nope]", "eval.long_baselines: unknown baseline"),
    ("eval.grids={extra: {momentum: [0.5]}}", "has no hyper-parameter 'momentum'"),
    ("eval.grids={extra: {step: [0]}}", "non-empty list"),
    ("eval.baselines=[scaffold]", "topology.name=star and model.server=true"),
    ("eval.baseline_preset=best", "tuned, paper"),
    ("eval.local_steps=0", "eval.local_steps=0 must be >= 1"),
])
def test_bad_baseline_config_is_one_line_error(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config_from_dict({}, [override])


def test_tune_dgd_keeps_its_signature():
    family = _family("topology.name=ring", "eval.dgd_steps=[0.1, 1.0]", "eval.momentum_grid=[0.5]")
    step, momentum = tune_dgd(family, 2, momentum=True)
    assert step in (0.1, 1.0) and momentum == 0.5
    assert tune_dgd(family, 2, momentum=False)[1] == 0.0


def test_summary_table_plot_and_schema(tmp_path):
    family = _family("topology.name=ring", "eval.baselines=[dgd, diging, centralized]", "eval.long_baselines=[dgd]",
                     "eval.dgd_steps=[0.3]", "eval.grids={diging: {step: [0.1]}, centralized: {step: [1], "
                     "momentum: [0]}}")
    torch.manual_seed(0)
    summary = evaluate(family, family.build_model())
    assert dataclasses.asdict(summary.communication) == {
        "rounds": 2, "messages": 24, "bytes": 24 * 650 * 4, "messages_per_round": 12, "bytes_per_round": 12 * 650 * 4}
    assert summary.final["relative_accuracy"] == pytest.approx(
        summary.final["accuracy"] / summary.comparisons["centralized"].final["accuracy"])
    assert_valid(summary.to_dict())
    table = format_table(summary)
    assert "diging" in table and "step 0.1" in table and "dgd_x2" in table and "kB" in table
    plot_communication(summary, tmp_path / "communication.png")
    assert (tmp_path / "communication.png").stat().st_size > 0
