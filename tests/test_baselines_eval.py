"""Evaluation wiring: configured baselines in summary["baselines"] with hyper-parameters, communication and the
centralized ceiling; the paper preset; config validation; the CLI table and the communication plot."""

import pytest
import torch

from surf import config as config_mod
from surf.errors import ConfigError
from surf.evaluate import baseline_grid, evaluate, evaluate_baselines, tune_dgd
from surf.experiment import Experiment
from surf.plots import plot_communication
from surf.tables import format_table

TINY = ["num_agents=6", "data.train_per_agent=6", "data.test_per_agent=3", "data.batch_size=3", "model.layers=2",
        "model.hops=1", "trainer.val_tasks=2", "eval.test_tasks=2", "eval.long_factor=2", "threads=1",
        "eval.centralized_rounds=3", "eval.local_steps=2", "eval.clients_per_round=2"]
SMALL_GRIDS = "eval.grids={dfedavgm: {step: [0.1], momentum: [0.0, 0.5]}, centralized: {step: [0.3, 1], momentum: [0]}}"


def _experiment(*extra: str) -> Experiment:
    return Experiment(config_mod.from_dict({}, TINY + [SMALL_GRIDS, *extra]))


def _tasks(exp):
    n = exp.cfg.eval.test_tasks
    return [exp.task("test", i) for i in range(n)], [exp.task("test", i, relabel=True) for i in range(n)]


def test_gossip_baselines_report_hyper_communication_and_relative_accuracy():
    exp = _experiment("topology.name=ring", "eval.baselines=[dgd, dsgd, dfedavgm, diging, extra, centralized]",
                      "eval.long_baselines=[extra]")
    results = evaluate_baselines(exp, *_tasks(exp), rounds=2)
    assert set(results) == {"dgd", "dsgd", "dfedavgm", "diging", "extra", "centralized", "extra_x2"}
    floats = 65 * 10  # digits: 64 features + bias, 10 classes
    for entry in results.values():
        assert {"accuracy", "accuracy_relabelled", "loss", "rounds", "step_size", "per_round_accuracy",
                "per_round_loss", "hyper", "communication", "relative_accuracy"} <= set(entry)
        assert len(entry["per_round_accuracy"]) == entry["rounds"] + 1
        assert entry["hyper"]["step"] == entry["step_size"]
    assert results["centralized"]["rounds"] == 3 and results["centralized"]["relative_accuracy"] == 1.0
    assert results["centralized"]["communication"]["bytes"] == 0
    assert results["extra_x2"]["rounds"] == 4
    # ring of 6: 12 directed links, one vector each (DIGing: two), 4 bytes per float
    assert results["dgd"]["communication"]["bytes_per_round"] == 12 * floats * 4
    assert results["diging"]["communication"]["bytes"] == 2 * 2 * 12 * floats * 4
    assert results["dsgd"]["hyper"]["batch"] == 3 and results["dfedavgm"]["hyper"]["local_steps"] == 2
    assert results["dfedavgm"]["hyper"]["momentum"] in (0.0, 0.5)


def test_star_baselines_and_paper_preset():
    exp = _experiment("topology.name=star", "topology.gso=lambda_max", "model.server=true",
                      "eval.baselines=[fedavg, scaffold, dgd, dfedavgm]", "eval.long_baselines=[]",
                      "eval.baseline_preset=paper")
    results = evaluate_baselines(exp, *_tasks(exp), rounds=2)
    assert results["fedavg"]["hyper"]["clients_per_round"] == 2
    assert results["fedavg"]["communication"]["messages_per_round"] == 2 + 5  # 2 uploads, broadcast to 5 clients
    assert results["scaffold"]["communication"]["bytes_per_round"] == 2 * 7 * 650 * 4
    assert results["dgd"]["step_size"] == 10.0 and results["dgd"]["preset"].startswith("paper preset")
    assert results["dfedavgm"]["hyper"] == {"step": 0.1, "momentum": 0.0, "batch": 3, "local_steps": 2}
    assert results["fedavg"]["preset"].startswith("tuned")  # the paper states no FedAvg step


def test_default_grids_follow_the_dgd_config_fields():
    cfg = config_mod.from_dict({}, ["eval.dgd_steps=[0.5]", "eval.momentum_grid=[0.9]",
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
        config_mod.from_dict({}, [override])


def test_tune_dgd_keeps_its_signature():
    exp = _experiment("topology.name=ring", "eval.dgd_steps=[0.1, 1.0]", "eval.momentum_grid=[0.5]")
    step, momentum = tune_dgd(exp, 2, momentum=True)
    assert step in (0.1, 1.0) and momentum == 0.5
    assert tune_dgd(exp, 2, momentum=False)[1] == 0.0


def test_summary_table_and_plot(tmp_path):
    exp = _experiment("topology.name=ring", "eval.baselines=[dgd, diging, centralized]", "eval.long_baselines=[dgd]",
                      "eval.dgd_steps=[0.3]", "eval.grids={diging: {step: [0.1]}, centralized: {step: [1], "
                      "momentum: [0]}}")
    torch.manual_seed(0)
    summary = evaluate(exp, exp.build_model())
    assert summary["communication"] == {"rounds": 2, "messages": 24, "bytes": 24 * 650 * 4, "messages_per_round": 12,
                                        "bytes_per_round": 12 * 650 * 4}
    assert summary["relative_accuracy"] == pytest.approx(
        summary["final"]["accuracy"] / summary["baselines"]["centralized"]["accuracy"])
    table = format_table(summary)
    assert "diging" in table and "step 0.1" in table and "dgd_x2" in table and "kB" in table
    plot_communication(summary, tmp_path / "communication.png")
    assert (tmp_path / "communication.png").stat().st_size > 0
