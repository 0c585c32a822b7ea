"""End-to-end: tiny runs through the CLI, determinism, resume, `surf list`, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest
import yaml

from surf.app.cli import main
from tests.conftest import REPO, TINY, TINY_DROPS, assert_valid, out_of_memory_line, run_tiny


def test_tiny_run_writes_complete_run_dir(tiny_run):
    summary = assert_valid(tiny_run / "summary.json")
    assert summary["method"] == "surf" and summary["rounds"] == 3 and summary["kind"] == "run"
    assert len(summary["per_layer"]["accuracy"]) == 4 and summary["layers"] == 3
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0 and 0.0 <= summary["final"]["accuracy_relabelled"] <= 1.0
    for name in ("dgd", "dgd_momentum"):
        base = summary["comparisons"][name]
        assert base["steps"] == 3 and base["hyper"]["step"] in (0.1, 1.0)
    assert (tiny_run / "checkpoints" / "best.pt").exists() and (tiny_run / "checkpoints" / "last.pt").exists()
    assert {p.name for p in (tiny_run / "plots").glob("*.png")} >= {"per_layer.png", "training.png",
                                                                    "constraints.png"}
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "lagrangian" in r] == [1, 2, 3, 4]
    assert "seed: 0" in (tiny_run / "config.yaml").read_text()


def test_same_seed_same_summary_and_resume_matches(tmp_path, tiny_run):
    assert run_tiny(tmp_path / "b") == 0
    first = json.loads((tiny_run / "summary.json").read_text())
    second = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert {k: v for k, v in first.items() if k != "git_sha"} == {k: v for k, v in second.items() if k != "git_sha"}
    # interrupted after 2 steps (checkpoint), then resumed to 4: identical result
    assert run_tiny(tmp_path / "c", ["trainer.steps=2"]) == 0
    config = tmp_path / "c" / "config.yaml"
    config.write_text(config.read_text().replace("steps: 2", "steps: 4"))
    (tmp_path / "c" / "summary.json").unlink()
    assert run_tiny(tmp_path / "c", resume=True) == 0
    resumed = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert resumed["per_layer"] == first["per_layer"] and resumed["final"] == first["final"]


def test_resume_accepts_another_thread_count_but_not_another_config(tmp_path, capsys):
    """A sweep cell resumed by a sweep with another --workers gets another thread count (surf.app.sweep_run)."""
    assert run_tiny(tmp_path / "r", ["trainer.steps=2", "threads=1"]) == 0
    (tmp_path / "r" / "summary.json").unlink()
    assert run_tiny(tmp_path / "r", ["trainer.steps=2", "threads=2"], resume=True) == 0
    assert "threads: 1" in (tmp_path / "r" / "config.yaml").read_text()  # the run keeps what it started with
    capsys.readouterr()
    assert run_tiny(tmp_path / "r", ["trainer.steps=2", "seed=1"], resume=True) == 2
    assert "config differs" in capsys.readouterr().err


def test_resume_of_a_run_written_before_a_config_field_was_added(tmp_path, capsys):
    """A run directory from before an upgrade lacks the fields added since; they take their defaults on resume, while
    any field that differs from the default is still a different config."""
    assert run_tiny(tmp_path / "r", ["trainer.steps=2"]) == 0
    (tmp_path / "r" / "summary.json").unlink()
    path = tmp_path / "r" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["inpainting"]["robust_gain"], saved["constraints"]["window_reduce"]  # fields a later version added
    path.write_text(yaml.safe_dump(saved))
    assert run_tiny(tmp_path / "r", ["trainer.steps=2"], resume=True) == 0
    (tmp_path / "r" / "summary.json").unlink()
    capsys.readouterr()
    assert run_tiny(tmp_path / "r", ["trainer.steps=2", "constraints.window_reduce=max"], resume=True) == 2
    assert "config differs" in capsys.readouterr().err


def test_unconstrained_and_distance_constraints_run(tmp_path):
    assert run_tiny(tmp_path / "u", ["constraints.kind=none"]) == 0
    assert json.loads((tmp_path / "u" / "summary.json").read_text())["method"] == "unrolling"
    assert run_tiny(tmp_path / "d", ["constraints.kind=distance", "constraints.form=difference"]) == 0


def test_eval_with_dropped_agents(tmp_path, tiny_run, capsys):
    assert main(["eval", str(tiny_run), "-o", "eval.n_async=2", "--out", str(tmp_path / "e")]) == 0
    summary = assert_valid(tmp_path / "e" / "summary.json")
    assert summary["eval"]["n_async"] == 2 and summary["kind"] == "eval"
    assert summary["evaluated_from"] == str(tiny_run)
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["config.yaml", "plots", "summary.json"]
    out = capsys.readouterr().out
    assert "n_async=2" in out and "if it was dropped at it" in out
    # the drop loss splits, paired agent by agent, into the agents that ran the last layer and the 2 dropped at it
    agents = yaml.safe_load((tiny_run / "config.yaml").read_text())["num_agents"]
    final, clean = summary["final"], json.loads((tiny_run / "summary.json").read_text())["final"]
    pooled = ((agents - 2) * final["drop_change_ran_last_layer"] + 2 * final["drop_change_dropped_last_layer"]) / agents
    assert pooled == pytest.approx(final["accuracy"] - clean["accuracy"], abs=1e-6)
    assert "drop_change_dropped_last_layer" not in clean


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=5", "unknown key 'trainer.epochs'"),
        ("model.variant=big", "model.variant"),
        ("topology.name=erdos_renyi", "disconnected"),
        ("data.source=npz", "data.path"),
        ("data.source=mnist", "data.source='mnist' is not one of"),
        ("eval.baselines=[dgd,sgd]", "unknown baseline 'sgd'"),
        ("trainer.lr=.nan", "trainer.lr=nan must be a finite number"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, override, message):
    extra = ["topology.params={p: 0.01}"] if override == "topology.name=erdos_renyi" else []
    cmd = [sys.executable, "-m", "surf.app.cli", "run", "simulations/quickstart.yaml", "--out", str(tmp_path / "x"),
           "-o", override] + [a for item in extra for a in ("-o", item)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists()


def test_a_problem_too_large_for_the_memory_is_one_line_exit_1(tmp_path):
    """Digits upsampled 3,000 times (24,000 x 24,000 pixels) ask for 3,856 GiB: one line, not torch's traceback."""
    line = out_of_memory_line(tmp_path / "x", "inpainting.upsample=3000")
    assert line.startswith("surf: error: out of memory asking for 3,855.9 GiB; lower the sizes")


def test_sizes_past_what_an_address_can_hold_are_one_line_exit_1(tmp_path, capsys):
    """Digits upsampled 10**9 times: torch's size calculation overflowed (a RuntimeError traceback before); the
    upsampled images are now counted against the memory first, so the line names their size."""
    assert main(["run", str(REPO / "simulations" / "inpainting.yaml"), "--out", str(tmp_path / "x"), "-o",
                 "inpainting.upsample=1000000000", "--quiet"]) == 1
    assert capsys.readouterr().err.startswith("surf: error: out of memory asking for 428,438,186,645,507.8 GiB; "
                                              "lower the sizes")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("config", "key"), [
    ("quickstart", "data.train_per_agent"), ("quickstart", "data.batch_size"), ("quickstart", "model.hops"),
    ("lista", "sparse_coding.train_signals"), ("lista", "sparse_coding.batch_size"),
    ("inpainting", "inpainting.upsample"), ("inpainting", "inpainting.batch_size"),
    ("inpainting", "inpainting.mask_squares"),
])
def test_sizes_that_fit_64_bits_but_no_memory_are_one_line_exit_1(config, key, tmp_path, capsys):
    """2**63 - 1 samples per agent, batch size or hops: an OverflowError, a numpy ValueError and a TypeError
    traceback deep inside, the first two after the run directory was written; LISTA's signals and GLOW-Prox's
    batch and squares ran out of memory after it was written, and its upsampling was a RuntimeError traceback."""
    assert main(["run", str(REPO / "simulations" / f"{config}.yaml"), "--out", str(tmp_path / "x"), "-o",
                 f"{key}={2**63 - 1}", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("surf: error: out of memory asking for "), err
    assert not (tmp_path / "x").exists()


def test_version(capsys):
    from surf import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"surf {__version__}\n"


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for title in ("task families", "topologies", "graph shift operators", "task generators", "data sources",
                  "baselines", "stress scenarios", "runtimes", "configs"):
        assert f"\n{title}" in "\n" + out
    assert "regular3_paper" in out and "dirichlet" in out and "simulations/quickstart.yaml" in out
    assert "dgd_momentum" in out and "[star; tunes step]" in out and "fig4_async" in out


def test_a_reader_that_leaves_early_is_not_an_error():
    cmd = [sys.executable, "-m", "surf.app.cli", "list"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO) as proc:
        proc.stdout.close()  # like `surf list | head -0`: every write after this one is a broken pipe
        stderr = proc.stderr.read().decode()
    assert proc.returncode == 0 and "Traceback" not in stderr and stderr == ""


def test_cli_start_up_does_not_import_pyg_or_torch_for_help():
    code = ("import sys; from surf.app import cli; cli.main(['list']); "
            "print('PYG' if 'torch_geometric' in sys.modules else 'NO_PYG')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip().endswith("NO_PYG")
    out = subprocess.run([sys.executable, "-c", "import sys; from surf.app import cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("override, fix", [
    ("trainer.lr=1e30", "rerun into a new --out with a lower trainer.lr"),  # --resume refuses a changed config
    ("model.w0_std=1e38", "before any meta-step, so the tasks or the initial model overflow, not the training: "
                          "lower the scales of the problem or of its start (e.g. model.w0_std"),  # no lr can help
])
def test_non_finite_training_stops_with_one_line_exit_1(tmp_path, override, fix):
    cmd = [sys.executable, "-m", "surf.app.cli", "run", "simulations/quickstart.yaml", "--out", str(tmp_path / "n"),
           "--quiet"] + [a for item in TINY + [TINY_DROPS, override] for a in ("-o", item)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("surf:")]
    assert len(lines) == 1 and "non-finite" in lines[0] and "Traceback" not in out.stderr
    assert fix in lines[0]
    assert not (tmp_path / "n" / "summary.json").exists()
