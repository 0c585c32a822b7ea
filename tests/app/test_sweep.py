"""Sweeps and reports: matrix expansion, stable cell names, skip finished cells, resume interrupted ones, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from surf import config as config_mod
from surf.app.cli import main
from surf.app.runner import train
from surf.app.sweep import Sweep
from surf.app.sweep_run import run_sweep
from surf.reporting.sweep_report import reproduce_command, write_report
from surf.utils.errors import ConfigError
from surf.utils.naming import cell_name

TINY = {
    "name": "tiny", "threads": 1, "num_agents": 6,
    "topology": {"name": "ring"},
    "data": {"train_per_agent": 8, "test_per_agent": 4, "batch_size": 4},
    "model": {"layers": 2, "hops": 1, "w0_std": 0.1, "hidden": 4},
    "trainer": {"steps": 4, "val_every": 2, "val_tasks": 1, "checkpoint_every": 2},
    "eval": {"test_tasks": 2, "dgd_steps": [1.0], "momentum_grid": [0.5], "long_factor": 2},
}


def write_sweep(tmp_path, **spec):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "base": TINY, **spec}))
    return path


def test_matrix_expansion_and_include(tmp_path):
    path = write_sweep(tmp_path, matrix={"constraints.kind": ["gradient_norm", "none"], "seed": [0, 1]},
                       include=[{"model.layers": 3}, {"constraints.kind": "none", "seed": 0}],
                       eval_matrix={"eval.n_async": [0, 1]})
    sweep = Sweep(path, tmp_path / "out", tmp_path / "store")
    names = [c.name for c in sweep.cells]
    assert names == ["constraints.kind-gradient_norm__seed-0", "constraints.kind-gradient_norm__seed-1",
                     "constraints.kind-none__seed-0", "constraints.kind-none__seed-1", "model.layers-3"]
    assert [c.cfg.seed for c in sweep.cells[:2]] == [0, 1]
    assert sweep.cells[4].cfg.model.layers == 3 and sweep.cells[4].cfg.trainer.steps == 4
    first = sweep.cells[0]
    assert [e.name for e in first.evals] == ["eval.n_async-0", "eval.n_async-1"]
    assert first.evals[0].path == first.path  # the same config as trained: the trained cell's own summary
    assert first.evals[1].path == first.path / "eval" / "eval.n_async-1"
    assert first.evals[1].cfg.eval.n_async == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()  # parsing writes nothing


def test_seeds_cross_every_trained_cell_and_names_label_cells(tmp_path):
    path = write_sweep(tmp_path, seeds=[0, 2], matrix={"model.layers": [2, 3]},
                       include=[{"name": "deep", "model.layers": 4, "seed": 7}], eval_matrix={"eval.n_async": [1]})
    sweep = Sweep(path, tmp_path / "out", tmp_path / "store")
    assert [c.name for c in sweep.cells] == ["model.layers-2__seed-0", "model.layers-2__seed-2",
                                             "model.layers-3__seed-0", "model.layers-3__seed-2",
                                             "name-deep__seed-0", "name-deep__seed-2"]
    assert [c.cfg.seed for c in sweep.cells] == [0, 2, 0, 2, 0, 2]  # 'seeds' wins over a cell's own seed
    assert sweep.cells[4].cfg.name == "deep" and sweep.cells[4].cfg.model.layers == 4
    assert all(len(c.evals) == 1 for c in sweep.cells)
    with pytest.raises(ConfigError, match="'seeds' must be a non-empty list of integers"):
        Sweep(write_sweep(tmp_path, seeds=[]), tmp_path / "out", tmp_path / "store")


def test_every_sweep_on_the_shipped_default_resolves_with_at_least_three_seeds(tmp_path):
    """Every sweep built on quickstart.yaml (the shipped learned optimizer) resolves (e.g. the paper-variant and star
    cells pin a default start, which a heavy-ball warm start cannot serve) with at least 3 seeds per trained cell."""
    from tests.conftest import REPO

    bases = 0
    for path in sorted((REPO / "simulations").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if spec.get("base") == "quickstart.yaml":
            bases += 1
            sweep = Sweep(path, tmp_path / "out", tmp_path / "store")
            assert len({c.cfg.seed for c in sweep.cells}) >= 3, path.name
    assert bases >= 9


def test_cell_names_are_stable_and_filesystem_safe():
    overrides = {"topology.params": {"p": 0.1}, "eval.dgd_steps": [0.1, 1], "data.path": "a b/c.npz"}
    name = cell_name(overrides)
    assert name == cell_name(dict(overrides))
    assert re.fullmatch(r"[A-Za-z0-9._+=-]+", name)
    assert cell_name({}) == "base"
    long = cell_name({f"k{i}.x": "v" * 20 for i in range(10)})
    assert len(long) <= 120 and long != cell_name({f"k{i}.x": "w" * 20 for i in range(10)})


def test_same_config_shares_a_trained_cell(tmp_path):
    one = Sweep(write_sweep(tmp_path, matrix={"seed": [0]}), tmp_path / "a", tmp_path / "store")
    two = Sweep(write_sweep(tmp_path, set={"seed": 0}), tmp_path / "b", tmp_path / "store")
    assert one.cells[0].cfg == two.cells[0].cfg
    assert one.cells[0].path.name.split("-")[-1] == two.cells[0].path.name.split("-")[-1]


def test_configs_differing_only_by_name_share_a_trained_cell(tmp_path):
    first = Sweep(write_sweep(tmp_path, set={"name": "first"}), tmp_path / "a", tmp_path / "store").cells[0]
    second = Sweep(write_sweep(tmp_path, set={"name": "second"}), tmp_path / "b", tmp_path / "store").cells[0]
    assert first.cfg.name != second.cfg.name and first.path.name.split("-")[-1] == second.path.name.split("-")[-1]
    stored = tmp_path / "store" / "first-0123456789"  # a cell stored under another digest (an earlier hash)
    stored.mkdir(parents=True)
    (stored / "config.yaml").write_text(yaml.safe_dump(config_mod.to_dict(first.cfg)))
    found = Sweep(write_sweep(tmp_path, set={"name": "second"}), tmp_path / "c", tmp_path / "store").cells[0]
    assert found.path == stored
    other = Sweep(write_sweep(tmp_path, set={"name": "second", "seed": 1}), tmp_path / "d", tmp_path / "store")
    assert other.cells[0].path != stored


@pytest.mark.parametrize("spec, message", [
    ({"matrix": {"trainer.stepz": [1]}}, "unknown key 'trainer.stepz'"),
    ({"eval_matrix": {"eval.n_asink": [1]}}, "unknown key 'eval.n_asink'"),
    ({"matrix": {"model.layers": [0]}}, "model.layers=0 must be >= 1"),
    ({"matrx": {"seed": [0]}}, "unknown sweep key 'matrx'"),
    ({"matrix": {"seed": 0}}, "must map dotted keys to non-empty lists"),
    ({"set": [1, 2]}, "'set' must map dotted keys to values"),
    ({"base": 5}, "'base' must be a config mapping or the path of a config file"),
    ({"matrix": {"sparse_coding.layers": [3, 4]}},  # two identical classifier cells, trained twice
     "cell sparse_coding.layers-3: key sparse_coding.layers: the decentralized family never reads sparse_coding"),
    ({"eval_matrix": {"data.dirichlet_alpha": [0.3]}},  # an evaluation equal to the trained cell's
     "key data.dirichlet_alpha: read only with data.partition=dirichlet (this config has imbalanced)"),
    ({"figure": "fig6"}, "figure='fig6' is not one of fig1, fig2,"),  # a report without its figure's section
    ({"figure": {"a": 1}}, "figure must be a string, not {'a': 1}"),  # surf report: unhashable dict traceback
    ({"name": ["x"]}, "name must be a string, not ['x']"),
    ({"name": "../../elsewhere"}, "name='../../elsewhere' names the sweep folder runs/sweeps/<name>: use a plain"),
    ({"description": {"a": 1}}, "description must be a string"),
])
def test_bad_sweeps_fail_before_anything_runs(tmp_path, spec, message):
    path = write_sweep(tmp_path, **spec)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_sweep(path, tmp_path / "out", tmp_path / "store")
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a sweep: a mapping of sweep keys, got list"),
    ("base: [unclosed\n", "line 2: invalid YAML"),
    ("base: broken.yaml\n", "broken.yaml line 2: invalid YAML"),
])
def test_malformed_sweep_files_are_one_line(tmp_path, text, message):
    (tmp_path / "broken.yaml").write_text("model: [\n")
    (tmp_path / "sweep.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_sweep(tmp_path / "sweep.yaml", tmp_path / "out", tmp_path / "store")
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_cli_sweep_error_is_one_line(tmp_path, capsys):
    path = write_sweep(tmp_path, matrix={"trainer.stepz": [1]})
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("surf: error:") and "\n" not in err


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    path = write_sweep(tmp, figure="fig4", matrix={"constraints.kind": ["gradient_norm", "none"]},
                       eval_matrix={"eval.n_async": [0, 1]})
    assert run_sweep(path, tmp / "out", tmp / "store", progress=False) == 0
    return tmp, path


def test_sweep_runs_every_cell_and_indexes_them(finished_sweep):
    tmp, path = finished_sweep
    index = json.loads((tmp / "out" / "sweep.json").read_text())
    assert [c["name"] for c in index["cells"]] == ["constraints.kind-gradient_norm", "constraints.kind-none"]
    for cell in index["cells"]:
        assert cell["state"] == "finished" and all(e["state"] == "finished" for e in cell["evals"])
        assert (tmp / "out" / cell["name"] / "summary.json").exists()  # readable link to the trained cell
    evaluated = json.loads((tmp / "out" / "constraints.kind-none" / "eval" / "eval.n_async-1" / "summary.json")
                           .read_text())
    assert evaluated["eval"]["n_async"] == 1 and evaluated["method"] == "unrolling"


def test_finished_cells_are_skipped(finished_sweep, monkeypatch, capsys):
    tmp, path = finished_sweep

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr("surf.app.cells.train", fail)
    monkeypatch.setattr("surf.app.cells.reevaluate", fail)
    assert run_sweep(path, tmp / "out", tmp / "store", progress=False) == 0
    assert "6 finished" in capsys.readouterr().out  # eval cells equal to their trained cell count too


def test_report_writes_markdown_and_plots(finished_sweep):
    tmp, _ = finished_sweep
    report = write_report(tmp / "out")
    text = report.read_text()
    assert "Fig. 4" in text and "relabelled" in text and "≈0.962" in text  # paper column beside ours
    assert "Accuracy lost (relabelled)" in text
    assert (tmp / "out" / "plots" / "fig4_async.png").stat().st_size > 1000
    assert main(["report", str(tmp / "out")]) == 0


def test_the_report_names_the_overrides_the_sweep_ran_with(finished_sweep, tmp_path):
    tmp, path = finished_sweep
    forced = Sweep(path, tmp / "out", tmp / "store", ["data.source=npz", "data.path=features/my data.npz"])
    assert forced.index()["overrides"] == ['data.source="npz"', 'data.path="features/my data.npz"']
    assert Sweep(path, tmp / "out", tmp / "store").index()["overrides"] == []
    index = json.loads((tmp / "out" / "sweep.json").read_text())
    assert reproduce_command({**index, "overrides": forced.index()["overrides"]}, Path("runs/sweeps/x")) == (
        f"surf sweep {path.resolve()} -o 'data.source=\"npz\"' -o 'data.path=\"features/my data.npz\"' && "
        "surf report runs/sweeps/x")
    del index["overrides"]  # an index written before overrides were recorded
    assert reproduce_command(index, Path("out")) == f"surf sweep {path.resolve()} && surf report out"


def test_report_without_sweep_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no sweep.json"):
        write_report(tmp_path)


@pytest.mark.parametrize("damage", ["empty config", "list config", "garbage summary"])
def test_report_of_a_damaged_cell_names_the_file_and_the_fix(finished_sweep, tmp_path, damage):
    """A finished cell whose config.yaml or summary.json was damaged: one line naming the file and how to run the
    cell again (an empty or non-mapping config was a TypeError traceback)."""
    tmp, _ = finished_sweep
    store = tmp_path / "store"
    shutil.copytree(tmp / "store", store)
    index = json.loads((tmp / "out" / "sweep.json").read_text())
    for cell in index["cells"]:  # the index of the copy points into the copied store
        for entry in (cell, *cell["evals"]):
            entry["path"] = entry["path"].replace(str(tmp / "store"), str(store))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.json").write_text(json.dumps(index))
    cell = Path(index["cells"][0]["path"])
    name, text = {"empty config": ("config.yaml", ""), "list config": ("config.yaml", "[1, 2]\n"),
                  "garbage summary": ("summary.json", "{garbage")}[damage]
    (cell / name).write_text(text)
    with pytest.raises(ConfigError, match=f"{cell / name}.*rerun the sweep to run the cell again"):
        write_report(tmp_path / "out")


def test_a_training_setting_in_the_eval_matrix_is_an_error(tmp_path):
    """An eval cell evaluates the trained model: a trainer key there changed nothing."""
    path = write_sweep(tmp_path, eval_matrix={"trainer.lr": [0.1], "eval.n_async": [1]})
    with pytest.raises(ConfigError, match="eval cell key trainer.lr: an evaluation does not train"):
        Sweep(path, tmp_path / "out", tmp_path / "store")
    Sweep(write_sweep(tmp_path, eval_matrix={"trainer.val_tasks": [1]}), tmp_path / "out", tmp_path / "store")


def test_a_folder_in_place_of_the_sweep_index_is_an_error(tmp_path):
    path = write_sweep(tmp_path)
    (tmp_path / "out" / "sweep.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match="sweep.json is a folder, not the sweep's index"):
        run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()


def test_interrupted_cell_resumes_from_its_checkpoint(tmp_path):
    """A cell with a checkpoint but no summary (killed mid-training) continues from it, as `surf run --resume`."""
    path = write_sweep(tmp_path)
    sweep = Sweep(path, tmp_path / "out", tmp_path / "store")
    cell = sweep.cells[0]
    half = config_mod.from_dict(config_mod.to_dict(cell.cfg), ["trainer.steps=2"])
    train(half, cell.path, progress=False)  # the state a kill after step 2 leaves: checkpoint at step 2 ...
    (cell.path / "summary.json").unlink()  # ... and no summary
    (cell.path / "config.yaml").write_text(yaml.safe_dump(config_mod.to_dict(cell.cfg), sort_keys=False))
    before = (cell.path / "metrics.jsonl").read_text().splitlines()
    assert cell.state == "resume"
    run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False)
    resumed = json.loads((cell.path / "summary.json").read_text())
    assert resumed["training"]["steps"] == 4
    rows = (cell.path / "metrics.jsonl").read_text().splitlines()
    assert rows[: len(before)] == before  # steps 0-2 kept, not recomputed
    assert [json.loads(r)["step"] for r in rows if "lagrangian" in r] == [1, 2, 3, 4]


def test_interrupted_cell_without_checkpoint_restarts(tmp_path):
    path = write_sweep(tmp_path)
    sweep = Sweep(path, tmp_path / "out", tmp_path / "store")
    cell = sweep.cells[0]
    cell.path.mkdir(parents=True)
    (cell.path / "config.yaml").write_text("partial")
    assert cell.state == "todo"
    run_sweep(path, tmp_path / "out", tmp_path / "store", progress=False)
    assert cell.done


def test_include_without_matrix_lists_every_cell_and_duplicates_run_once(tmp_path):
    path = write_sweep(tmp_path, include=[{"constraints.kind": "gradient_norm"}, {"constraints.kind": "none"},
                                          {"seed": 0}])  # seed 0 is the default: the same config as the first
    sweep = Sweep(path, tmp_path / "out", tmp_path / "store")
    assert [c.name for c in sweep.cells] == ["constraints.kind-gradient_norm", "constraints.kind-none"]
    assert [c.name for c in Sweep(write_sweep(tmp_path), tmp_path / "o", tmp_path / "s").cells] == ["base"]
