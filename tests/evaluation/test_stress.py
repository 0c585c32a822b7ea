"""`surf stress` end to end on tiny trained runs; robust training; the train x test matrix; one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from surf import config as config_mod
from surf.app.cli import main
from surf.app.registry import check_names, load_trained
from surf.evaluation.stress import Learned, StressBench
from surf.families.classifier.family import ClassifierFamily
from surf.scenarios.scenario import load_scenario
from tests.conftest import REPO, TINY, assert_valid, run_tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    """The shared tiny SURF run (as ``clean``) and a tiny run trained under Bernoulli dropout."""
    root = tmp_path_factory.mktemp("stress")
    shutil.copytree(tiny_run, root / "clean")
    assert run_tiny(root / "robust", ["trainer.scenario=bernoulli", "trainer.scenario_severity=0.3"]) == 0
    return root


def test_stress_writes_table_plot_and_matches_the_plain_evaluation(runs, capsys):
    out = runs / "out"
    args = ["stress", str(runs / "clean"), "--scenario", "fig4_async", "--severity", "0", "2", "4",
            "--repeats", "3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    result = assert_valid(json.loads((out / "stress.json").read_text())["fig4_async"], "stress")
    assert result["severities"] == [0, 2, 4] and result["repeats"] == 3
    assert set(result["methods"]) == {"clean", "dgd", "dgd_momentum"}
    surf = result["methods"]["clean"]
    assert len(surf["mean"]) == 3 and all(0.0 <= f <= 1.0 for f in surf["constraint_satisfied_fraction"])
    assert surf["declared_quantity"] == "loss" and len(surf["declared_decrease_fraction"]) == 3  # the default's
    summary = json.loads((runs / "clean" / "summary.json").read_text())
    assert surf["mean"][0] == pytest.approx(summary["final"]["accuracy"], abs=1e-6)  # severity 0 = plain run
    dgd = summary["comparisons"]["dgd"]["final"]["accuracy"]
    assert result["methods"]["dgd"]["mean"][0] == pytest.approx(dgd, abs=1e-6)
    assert surf["std"][0] > 0.0 and surf["std_over_repeats"][0] == 0.0  # tasks differ; nothing random at 0
    assert surf["std_over_repeats"][2] > 0.0
    table = (out / "stress.md").read_text()
    assert "| n_async" in table and "±" in table and "constraint holds (clean)" in table
    assert (out / "plots" / "stress_fig4_async.png").stat().st_size > 0
    assert "fig4_async" in capsys.readouterr().out


def test_stress_same_seed_same_numbers_and_several_scenarios(runs):
    for name in ("a", "b"):
        args = ["stress", str(runs / "clean"), "--scenario", "link_loss", "one_peer_exponential", "--repeats", "2",
                "--tasks", "1", "--baselines", "dgd", "--out", str(runs / name), "--quiet"]
        assert main(args) == 0
    first, second = (json.loads((runs / n / "stress.json").read_text()) for n in ("a", "b"))
    assert set(first) == {"link_loss", "one_peer_exponential"}
    for result in (first, second):
        for row in result.values():
            row.pop("seconds")
    assert first == second
    loss = first["link_loss"]["methods"]["clean"]["mean"]
    assert len(set(loss)) > 1  # lost messages change the result


def test_robust_training_and_matrix(runs):
    cfg = config_mod.load(runs / "robust" / "config.yaml")
    assert cfg.trainer.scenario == "bernoulli"
    exp = ClassifierFamily(cfg)
    task = exp.task("train", 0)
    _, schedule, mode = exp.training_scenario.apply(task, exp.shift_for(task))
    assert schedule is not None and not bool(schedule(1).active.all()) and mode == "stale"
    out = runs / "matrix"
    args = ["stress", str(runs / "clean"), str(runs / "robust"), "--matrix", "--scenario", "clean", "bernoulli",
            "--repeats", "2", "--tasks", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    result = assert_valid(out / "matrix.json", "matrix")
    rows = result["rows"]
    # the shared tiny run trains like the shipped default: 0..1 of its 8 agents dropped per layer
    assert rows["robust"]["trained_on"] == "bernoulli@0.3" and rows["clean"]["trained_on"] == "fig4_async@0..1"
    assert set(result["rows"]["robust"]["cells"]) == {"clean", "bernoulli"}
    assert "bernoulli @ 0.1" in (out / "matrix.md").read_text()


def test_stress_repetition_zero_equals_eval_with_the_same_drops(runs, tmp_path):
    """`surf stress --scenario fig4_async --severity 5 --repeats 1` = `surf eval -o eval.n_async=5` (one drop model)."""
    args = ["stress", str(runs / "clean"), "--scenario", "fig4_async", "--severity", "5", "--repeats", "1",
            "--out", str(tmp_path / "stress"), "--quiet"]
    assert main(args) == 0
    assert main(["eval", str(runs / "clean"), "-o", "eval.n_async=5", "--out", str(tmp_path / "eval")]) == 0
    stress = json.loads((tmp_path / "stress" / "stress.json").read_text())["fig4_async"]["methods"]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert stress["clean"]["mean"][0] == pytest.approx(summary["final"]["accuracy"], abs=1e-6)
    for name in ("dgd", "dgd_momentum"):
        assert stress[name]["mean"][0] == pytest.approx(summary["comparisons"][name]["final"]["accuracy"], abs=1e-6)


def test_distribution_shift_scenario_runs(runs):
    args = ["stress", str(runs / "clean"), "--scenario", "dirichlet", "--severity", "0.3", "--repeats", "2",
            "--tasks", "1", "--baselines", "--out", str(runs / "shift"), "--quiet"]
    assert main(args) == 0
    result = json.loads((runs / "shift" / "stress.json").read_text())["dirichlet"]
    assert set(result["methods"]) == {"clean"} and result["repeats"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scenario", "bernouli"], "unknown scenario 'bernouli'"),
        (["--scenario", "bernoulli", "--severity", "2"], "must be in [0, 1]"),
        (["--scenario", "bernoulli", "--baselines", "sgd"], "unknown baseline 'sgd'"),
        (["--scenario", "bernoulli", "link_loss", "--severity", "0.1"], "exactly one --scenario"),
    ],
)
def test_stress_errors_are_one_line_exit_2(runs, extra, message):
    proc = subprocess.run([sys.executable, "-m", "surf.app.cli", "stress", str(runs / "clean"), *extra, "--tasks", "1",
                           "--repeats", "1", "--quiet", "--out", str(runs / "err")],
                          capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_stress_without_a_trained_model(tmp_path):
    assert main(["stress", str(tmp_path), "--scenario", "bernoulli"]) == 2
    assert not (tmp_path / "stress").exists()


def test_unknown_training_scenario_is_a_config_error():
    cfg = config_mod.load(REPO / "simulations" / "quickstart.yaml", TINY + ["trainer.scenario=nope",
                                                                               "trainer.scenario_severity=null"])
    with pytest.raises(Exception, match="unknown scenario 'nope'"):
        ClassifierFamily(cfg)
    with pytest.raises(Exception, match="unknown scenario 'nope'"):
        check_names(cfg)
    assert Path(REPO / "simulations" / "scenarios" / "fig4_async.yaml").exists()


class Backwards:
    """A mapper running the chunks in this process, last chunk first: any order must give the same bench."""

    workers = 3

    def __init__(self):
        self.chunks = []

    def __call__(self, fn, shared, items):
        self.chunks = list(items)
        for chunk in reversed(self.chunks):
            yield fn(shared, chunk)


def test_stress_units_in_any_order_and_chunks_give_the_same_result(runs):
    family, model = load_trained(runs / "clean")
    bench = StressBench(family, [Learned("clean", family.cfg, model)], ["dgd"], test_tasks=2)
    scenario = load_scenario("bernoulli")
    in_order = bench.run(scenario, [0.0, 0.3], repeats=3, progress=False)
    mapper = Backwards()
    backwards = bench.run(scenario, [0.0, 0.3], repeats=3, progress=False, mapper=mapper)
    assert len(mapper.chunks) == 8  # 2 + 6 units (severity 0 is deterministic: one repetition) in 8 chunks
    assert [u for chunk in mapper.chunks for u in chunk] == [(0, 0, 0), (0, 1, 0)] + [
        (1, i, r) for i in range(2) for r in range(3)]
    in_order.seconds = backwards.seconds = 0.0
    assert backwards == in_order
    assert in_order.methods["clean"].std_over_repeats[1] > 0  # repetitions differ: their order matters
