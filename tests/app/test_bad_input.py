"""Bad input stays clean: every kind of bad input is one line naming the fix, exit code 2, no traceback and nothing
written (the table in docs/bad_input.md, row by row). Runs in-process: ``main`` catches only ``SurfError``, so any
other exception (a traceback) fails the test; ``test_cli.py`` checks a few in a real subprocess."""

import os
import shutil
import socket

import pytest

from surf.app.cli import main

Q = "simulations/quickstart.yaml"
ROWS = {  # kind of bad input -> (command line; RUN = a trained run, TMP = a scratch folder), text the line must hold
    "unknown key": (["run", Q, "-o", "trainer.epochs=5"], "unknown key 'trainer.epochs' (valid:"),
    "wrong type": (["run", Q, "-o", "trainer.steps=abc"], "trainer.steps: expected int"),
    "wrong type (list)": (["run", Q, "-o", "eval.dgd_steps=fast"], "eval.dgd_steps: expected a list"),
    "NaN": (["run", Q, "-o", "trainer.lr=.nan"], "trainer.lr=nan must be a finite number"),
    "inf": (["run", Q, "-o", "model.w0_std=.inf"], "model.w0_std=inf must be a finite number"),
    "negative size": (["run", Q, "-o", "data.batch_size=-1"], "data.batch_size=-1 must be >= 1"),
    "negative count": (["run", Q, "-o", "num_agents=-3"], "num_agents=-3 must be >= 1"),
    "disconnected graph": (["run", Q, "-o", "topology.name=erdos_renyi", "-o", "topology.params={p: 0.01}"],
                           "disconnected; raise params.p"),
    "graph too small for its degree": (["run", Q, "-o", "num_agents=2"],
                                       "degree 3 needs num_agents >= 4 (got 2); raise num_agents"),
    "malformed edge list": (["run", Q, "-o", "num_agents=3", "-o", "topology.name=edge_list", "-o",
                             "topology.params={path: TMP/malformed.txt}"], "expected 'u v [weight]'"),
    "node id out of range": (["run", Q, "-o", "num_agents=3", "-o", "topology.name=edge_list", "-o",
                              "topology.params={path: TMP/range.txt}"], "node id 99 >= num_agents=3"),
    "missing data file": (["run", Q, "-o", "data.source=npz", "-o", "data.path=TMP/missing.npz"],
                          "data file 'TMP/missing.npz' not found"),
    "corrupt data file": (["run", Q, "-o", "data.source=npz", "-o", "data.path=TMP/corrupt.npz"],
                          "is not a readable .npz archive"),
    "missing config": (["run", "TMP/none.yaml"], "config file 'TMP/none.yaml' not found"),
    "missing run directory": (["eval", "TMP/norun"], "no trained model in TMP/norun/checkpoints"),
    "corrupt run directory": (["eval", "TMP/broken_run"], "best.pt is truncated or corrupt"),
    "corrupt sweep index": (["report", "TMP/bad_sweep"], "TMP/bad_sweep/sweep.json is not readable JSON"),
    "foreign sweep index": (["report", "TMP/foreign_sweep"], "TMP/foreign_sweep/sweep.json is not a sweep index"),
    "a sweep index whose figure is not a name": (["report", "TMP/odd_figure"],  # was: an unhashable-dict traceback
                                                 "TMP/odd_figure/sweep.json is not a sweep index"),
    "run directory without its config": (["eval", "TMP/no_config"], "TMP/no_config has a model but no config.yaml"),
    "run directory with an empty config": (["partition", "TMP/empty_config", "--nodes", "2", "--out", "TMP/pe"],
                                           "empty_config/config.yaml is empty, not the run's resolved config"),
    "a checkpoint that is a folder": (["eval", "TMP/folder_best"], "best.pt is a folder, not a file; move it away"),
    "resume a non-run folder": (["run", Q, "--resume", "--out", "TMP/plain"], "is not a run directory"),
    "impossible drop count": (["eval", "RUN", "-o", "eval.n_async=99"], "eval.n_async=99 must be in [0, num_agents"),
    "model of another shape": (["eval", "RUN", "-o", "model.layers=5"], "(keep the trained model.layers=3)"),
    "training drops more agents than there are": (["run", Q, "-o", "num_agents=8", "-o", "topology.name=ring"],
                                                  "trainer.scenario_severity: scenario 'fig4_async' at severity "
                                                  "10.0: async: n=10 must be < num_agents=8; lower it"),
    "stress drops more agents than there are": (["stress", "RUN", "--scenario", "fig4_async", "--severity", "8",
                                                 "--tasks", "1", "--repeats", "1", "--out", "TMP/stress_out"],
                                                "async: n=8 must be < num_agents=8; choose a lower --severity"),
    "stress's default severities drop too many": (["stress", "RUN", "--scenario", "fig4_async", "--tasks", "1",
                                                   "--repeats", "1", "--out", "TMP/stress_default"],
                                                  "the scenario's severities go up to 10: pass lower ones with "
                                                  "--severity"),
    "a scenario that would never act": (["stress", "RUN", "--scenario", "churn", "--severity", "0.2", "--tasks", "1",
                                         "--repeats", "1", "--out", "TMP/stress_churn"],
                                        "churn: at=4 is after the last step (3), so no agent would ever fail; set at "
                                        "<= 3 in the scenario file"),
    "a training scenario that would never act": (["run", Q, "-o", "model.layers=3", "-o", "trainer.scenario=churn",
                                                  "-o", "trainer.scenario_severity=0.1"], "churn: at=4 is after the "
                                                 "last step (3)"),
    "a damaged stress record to merge into": (["stress", "RUN", "--scenario", "fig4_async", "--severity", "1",
                                               "--tasks", "1", "--repeats", "1", "--out", "TMP/bad_stress"],
                                              "bad_stress/stress.json is not a readable stress record"),
    "an evaluation into a folder in use": (["eval", "RUN", "--out", "TMP/used"],  # after the evaluation, before
                                           "run directory TMP/used is not empty; choose another --out"),
    "a run directory another process is training": (["run", Q, "--out", "TMP/busy"],
                                                    "run directory TMP/busy is being run by process"),
    "a run into a folder in use": (["run", Q, "--out", "TMP/used"], "TMP/used is not empty; pass --resume or choose"),
    "negative drop count": (["deploy", "RUN", "--scenario", "dropped:-1"], "expected dropped:K"),
    "too many dropped (deploy)": (["deploy", "RUN", "--scenario", "dropped:99"], "eval.n_async=99 must be in"),
    "unknown scenario": (["stress", "RUN", "--scenario", "nope"], "unknown scenario 'nope'"),
    "unknown runtime": (["deploy", "RUN", "--runtime", "nope"], "--runtime 'nope' is not one of flower"),
    "unknown data source": (["run", Q, "-o", "data.source=mnist"], "data.source='mnist' is not one of"),
    "impossible node count": (["partition", "RUN", "--nodes", "99", "--out", "TMP/p"], "99 nodes for 8 agents"),
    "more agents per node than agents": (["deploy", "RUN", "--agents-per-node", "9"],
                                         "--agents-per-node=9 must be in [1, num_agents=8]"),
    "a flag of the other runtime": (["deploy", "RUN", "--nodes", "2"],  # the simulation ignored it
                                    "--nodes applies to --runtime flower-deployment only; drop it or pass --runtime "
                                    "flower-deployment"),
    "a flag of the other runtime (deployment)": (["deploy", "RUN", "--runtime", "flower-deployment", "--nodes", "2",
                                                  "--agents-per-node", "2"],
                                                 "--agents-per-node applies to --runtime flower only"),
    "no node count": (["deploy", "RUN", "--runtime", "flower-deployment"], "needs --nodes M"),
    "missing node data": (["deploy", "RUN", "--runtime", "flower-deployment", "--nodes", "2", "--partition",
                           "TMP/empty"], "node_0.npz does not exist"),
    "corrupt node data": (["deploy", "RUN", "--runtime", "flower-deployment", "--nodes", "2", "--partition",
                           "TMP/garbage"], "node_0.npz is truncated or not a SURF partition"),
    "node data of another split": (["deploy", "RUN", "--runtime", "flower-deployment", "--nodes", "2",
                                    "--partition", "TMP/four"], "node_0.npz was cut for another run or number"),
    "zero layers": (["run", Q, "-o", "model.layers=0"], "model.layers=0 must be >= 1"),
    "negative round timeout": (["deploy", "RUN", "--round-timeout", "-1"],
                               "--round-timeout=-1.0 must be a positive number of seconds"),
    "NaN deployment timeout": (["deploy", "RUN", "--runtime", "flower-deployment", "--nodes", "2", "--deploy-timeout",
                                "nan"], "--deploy-timeout=nan must be a positive number of seconds"),
    "zero tasks (deploy)": (["deploy", "RUN", "--tasks", "0"], "--tasks=0 must be in [1, eval.test_tasks="),
    "zero tasks (partition)": (["partition", "RUN", "--nodes", "2", "--tasks", "0", "--out", "TMP/p0"],
                               "--tasks=0 must be in [1, eval.test_tasks="),
    "output folder is a file": (["run", Q, "--out", "TMP/afile"], "--out TMP/afile is a file; choose a folder"),
    "output folder under a file": (["eval", "RUN", "--out", "TMP/afile/e"],
                                   "--out TMP/afile/e: TMP/afile is a file, not a folder; choose another --out"),
    "output folder is a file (stress)": (["stress", "RUN", "--scenario", "fig4_async", "--out", "TMP/afile"],
                                         "--out TMP/afile is a file"),
    "node data folder under a file": (["partition", "RUN", "--nodes", "2", "--out", "TMP/afile/p"],
                                      "TMP/afile is a file, not a folder"),
    "sweep store under a file": (["sweep", "simulations/fig5_epsilon.yaml", "--store", "TMP/afile/s"],
                                 "--store TMP/afile/s: TMP/afile is a file"),
    "feature file is a folder": (["features", "--dataset", "mnist", "--root", "TMP", "--out", "TMP/plain"],
                                 "--out TMP/plain is a folder; name a file"),
    "a setting the family never reads": (["run", "simulations/lista.yaml", "-o", "eval.n_async=2"],
                                         "-o eval.n_async: the sparse_coding family never reads eval"),
    "a training setting of an evaluation": (["eval", "RUN", "-o", "trainer.steps=7"],  # evaluated as if unchanged
                                            "-o trainer.steps: an evaluation does not train, so it would change "
                                            "nothing or only a label; drop it"),
    "a model's initialization in an evaluation": (["eval", "RUN", "-o", "model.step_init=0.5"],  # the trained values
                                                  "-o model.step_init: an evaluation does not train"),
    "the trained constraint in an evaluation": (["deploy", "RUN", "-o", "constraints.kind=none"],  # a SURF model was
                                                "-o constraints.kind: an evaluation does not train"),  # 'unrolling'

    "a setting surf partition never reads": (["partition", "RUN", "--nodes", "2", "--out", "TMP/pm", "-o",
                                              "eval.n_async=2"], "-o eval.n_async: surf partition cuts the data, "
                                             "which depends on seed, num_agents, data, topology and eval.test_tasks"),
    "a setting read only under another value": (["run", Q, "-o", "data.dirichlet_alpha=0.5"],  # the data: unchanged
                                                "-o data.dirichlet_alpha: read only with data.partition=dirichlet "
                                                "(this config has imbalanced)"),
    "a setting read only under another value (eval)": (["eval", "RUN", "-o", "data.gaussian_dim=5"],
                                                       "-o data.gaussian_dim: read only with data.source=gaussian"),
    "a data file the source never reads": (["run", "simulations/inpainting.yaml", "-o", "inpainting.path=TMP/x.npz"],
                                           "-o inpainting.path: read only with inpainting.images=npz|mnist|cifar10 "
                                           "(this config has digits)"),
    "a setting read only under another value (LISTA)": (["run", "simulations/lista.yaml", "-o",
                                                         "sparse_coding.dictionary_iters=5"],  # a Gaussian dictionary
                                                        "-o sparse_coding.dictionary_iters: read only with "
                                                        "sparse_coding.dictionary=digits (this config has gaussian)"),
    "a severity for a scenario without one": (["stress", "RUN", "--scenario", "clean", "--severity", "3",
                                               "--out", "TMP/stress_clean"],  # it ran the clean scenario as "3"
                                              "--severity: scenario 'clean' has no severity (severity_name: none), "
                                              "so it would change nothing; drop it"),
    "a training severity for a scenario without one": (["run", Q, "-o", "trainer.scenario=relabelled"],
                                                       "trainer.scenario_severity: scenario 'relabelled' has no "
                                                       "severity"),  # the quickstart's severity (10) was ignored
    "an infinite perturbation": (["stress", "RUN", "--scenario", "feature_noise", "--severity", "1e400", "--out",
                                  "TMP/stress_inf"],  # it reported chance accuracy for every method
                                 "scenario 'feature_noise', perturbations[0].std=inf must be a finite number"),
    "another family's setting (classifier)": (["eval", "RUN", "-o", "sparse_coding.layers=3"],
                                              "the decentralized family never reads sparse_coding"),
    "a sweep given to surf run": (["run", "simulations/fig4_async.yaml"],  # was: unknown key 'figure'
                                  "simulations/fig4_async.yaml is a sweep (it has 'base:'), not a run config: run it "
                                  "with `surf sweep simulations/fig4_async.yaml`"),
    "a run config given to surf sweep": (["sweep", Q, "--out", "TMP/sw"],  # was: unknown sweep key 'seed'
                                         f"{Q} is a run config, not a sweep: run it with `surf run {Q}`"),
    "a config file given as a run directory": (["eval", Q],  # the advice was `surf run CONFIG --out` the file
                                               f"{Q} is a file, not a run directory"),
    "missing argument": (["run"], "the following arguments are required: config"),
    "a stress plan past this machine's memory": (["stress", "RUN", "--scenario", "fig4_async", "--severity", "1",
                                                  "--tasks", "99999999999999999999", "--out", "TMP/stress_huge"],
                                                 "x 1 severities = 1,999,999,999,999,999,999,980 stress runs would "
                                                 "need"),  # was: killed for memory after tuning, no message
    "more Ray workers than Ray takes": (["stress", "RUN", "--scenario", "fig4_async", "--workers", str(10**20),
                                         "--out", "TMP/stress_workers"],  # was: Ray's ValueError traceback
                                        f"--workers={10**20} must be in [1, 4096]"),
    "more threads than a machine starts": (["features", "--dataset", "mnist", "--root", "TMP", "--threads", "100000",
                                            "--out", "TMP/f.npz"],  # was: a hang (100,000 OpenMP threads)
                                           "--threads 100000 must be in [0, 1024]"),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, tiny_run):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "malformed.txt").write_text("0 1\n1 2\nfoo bar\n")
    (tmp / "range.txt").write_text("0 1\n1 99\n")
    (tmp / "corrupt.npz").write_bytes(b"garbage")
    (tmp / "afile").write_text("")
    for name, index in (("bad_sweep", "{truncated"), ("foreign_sweep", '{"name": "x", "cells": [{"name": "c"}]}'),
                        ("odd_figure", '{"name": "x", "sweep_file": "s.yaml", "figure": {"a": 1}, "cells": []}')):
        (tmp / name).mkdir()
        (tmp / name / "sweep.json").write_text(index)
    (tmp / "busy.lock").write_text(f"{socket.gethostname()} {os.getppid()}")  # a live process trains TMP/busy
    (tmp / "used").mkdir()
    (tmp / "used" / "notes.txt").write_text("someone's files")
    (tmp / "bad_stress").mkdir()  # a JSONDecodeError traceback after all the stress work before
    (tmp / "bad_stress" / "stress.json").write_text('{"fig4_async": {"scenario": ')
    for name in ("empty", "garbage", "plain"):
        (tmp / name).mkdir()
    for s in range(2):
        (tmp / "garbage" / f"node_{s}.npz").write_bytes(b"PK\x03\x04 not really")
    assert main(["partition", str(tiny_run), "--nodes", "4", "--out", str(tmp / "four"), "--tasks", "1"]) == 0
    broken = tmp / "broken_run"
    shutil.copytree(tiny_run, broken)
    (broken / "checkpoints" / "best.pt").write_bytes(b"\x80\x04 truncated")
    shutil.copytree(tiny_run, tmp / "no_config")
    (tmp / "no_config" / "config.yaml").unlink()
    shutil.copytree(tiny_run, tmp / "empty_config")  # read as all defaults, partition cut another run's tasks
    (tmp / "empty_config" / "config.yaml").write_text("")
    shutil.copytree(tiny_run, tmp / "folder_best")
    (tmp / "folder_best" / "checkpoints" / "best.pt").unlink()
    (tmp / "folder_best" / "checkpoints" / "best.pt").mkdir()
    return tmp


@pytest.mark.parametrize("kind", list(ROWS))
def test_bad_input_is_one_line_exit_2_nothing_written(kind, scratch, tiny_run, capsys):
    argv, expected = ROWS[kind]
    argv = [a.replace("TMP", str(scratch)).replace("RUN", str(tiny_run)) if a != "--runtime" else a for a in argv]
    out = scratch / f"out_{kind.replace(' ', '_')}"
    if argv[0] in ("run", "deploy", "eval") and "--out" not in argv:
        argv += ["--out", str(out)]
    before = sorted(p.name for p in scratch.iterdir())
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("surf: error: "), (code, err)
    assert expected.replace("TMP", str(scratch)).replace("RUN", str(tiny_run)) in err[0]
    assert not out.exists() and sorted(p.name for p in scratch.iterdir()) == before
    assert not (scratch / "plain" / "config.yaml").exists()


@pytest.mark.parametrize("command", ["run", "eval"])
def test_odd_values_of_any_key_run_to_the_end_or_fail_in_one_line(command, tiny_run, tmp_path, capsys):
    """A fuzz through the whole of `surf run` (config, family, training, evaluation, plots) and of `surf eval` of a
    trained run, not only the config: an odd value of any classifier key (negative, zero, huge, empty) gives a
    finished command or a one-line error, never a traceback. It found model.step_init=0 (a ZeroDivisionError) and
    eval.momentum_grid=[] (an IndexError). Derandomized: the same examples in every run of the suite."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from tests.conftest import TINY, config_keys

    apart = ("device", "workers", "name", "family")  # a GPU, Ray, the run folder, the family: tested apart
    names = sorted(k for k in config_keys() if not k.startswith(("sparse_coding.", "inpainting."))
                   and k.rpartition(".")[2] not in apart)
    odd = st.sampled_from(["-1", "0", "1", "1e-12", "1e9", "[]", "[0]", "[-1]", "null", "true"])
    plain = TINY + ["trainer.steps=1", "trainer.scenario=null", "trainer.scenario_severity=null", "eval.test_tasks=1"]
    runs = iter(range(10**6))

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(names), odd), min_size=1, max_size=2))
    @example([("model.warm_start", "none"), ("model.step_init", "0")])  # what it found, run first
    @example([("eval.momentum_grid", "[]")])
    def check(overrides):
        if command == "run":
            argv, fixed = ["run", Q, "--out", str(tmp_path / str(next(runs))), "--quiet"], plain
        else:
            argv, fixed = ["eval", str(tiny_run)], ["eval.test_tasks=1"]
        for item in fixed + [f"{key}={value}" for key, value in overrides]:
            argv += ["-o", item]
        capsys.readouterr()
        code = main(argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("surf: ")]
        assert code == 0 or (code in (1, 2) and len(err) == 1), (overrides, code, err)

    check()


def test_an_evaluation_into_a_folder_in_use_fails_before_it_evaluates(tiny_run, tmp_path, monkeypatch, capsys):
    """It used to find out only when writing, after the whole evaluation."""
    from surf.training.rundir import RunDir

    def evaluated(*args, **kwargs):
        raise AssertionError("the model was loaded for an evaluation whose output folder is in use")

    monkeypatch.setattr(RunDir, "best_model", evaluated)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("someone's files")
    assert main(["eval", str(tiny_run), "--out", str(tmp_path / "used")]) == 2
    assert "is not empty; choose another --out" in capsys.readouterr().err
