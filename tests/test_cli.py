"""End-to-end: tiny runs through the CLI, determinism, resume, and one-line errors with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from surf.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "num_agents=8", "data.train_per_agent=6", "data.test_per_agent=3", "data.batch_size=3", "model.layers=3",
    "model.hops=1", "model.hidden=4", "trainer.steps=4", "trainer.val_every=2", "trainer.val_tasks=2",
    "trainer.checkpoint_every=2", "eval.test_tasks=2", "eval.dgd_steps=[0.1,1.0]", "eval.momentum_grid=[0.5]",
    "eval.long_factor=2", "topology.name=ring",
]


def _run(tmp_path: Path, name: str, extra: list[str] = (), resume: bool = False) -> int:
    args = ["run", str(REPO / "simulations" / "quickstart.yaml"), "--out", str(tmp_path / name), "--quiet"]
    for item in TINY + list(extra):
        args += ["-o", item]
    return main(args + (["--resume"] if resume else []))


def test_tiny_run_writes_complete_run_dir(tmp_path, capsys):
    assert _run(tmp_path, "a") == 0
    run = tmp_path / "a"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "surf" and summary["rounds"] == 3
    assert len(summary["per_layer"]["accuracy"]) == 4
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0 and 0.0 <= summary["final"]["accuracy_relabelled"] <= 1.0
    for name in ("dgd", "dgd_momentum"):
        assert summary["baselines"][name]["rounds"] == 3 and summary["baselines"][name]["step_size"] in (0.1, 1.0)
    assert (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "last.pt").exists()
    assert {p.name for p in (run / "plots").glob("*.png")} >= {"per_layer.png", "training.png", "constraints.png"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "lagrangian" in r] == [1, 2, 3, 4]
    assert "seed: 0" in (run / "config.yaml").read_text()
    assert "layer" in capsys.readouterr().out


def test_same_seed_same_summary_and_resume_matches(tmp_path):
    assert _run(tmp_path, "a") == 0
    assert _run(tmp_path, "b") == 0
    first = (tmp_path / "a" / "summary.json").read_text()
    assert first == (tmp_path / "b" / "summary.json").read_text()
    # interrupted after 2 steps (checkpoint), then resumed to 4: identical result
    assert _run(tmp_path, "c", ["trainer.steps=2"]) == 0
    config = tmp_path / "c" / "config.yaml"
    config.write_text(config.read_text().replace("steps: 2", "steps: 4"))
    (tmp_path / "c" / "summary.json").unlink()
    assert _run(tmp_path, "c", resume=True) == 0
    resumed = json.loads((tmp_path / "c" / "summary.json").read_text())
    expected = json.loads(first)
    assert resumed["per_layer"] == expected["per_layer"] and resumed["final"] == expected["final"]


def test_unconstrained_and_distance_constraints_run(tmp_path):
    assert _run(tmp_path, "u", ["constraints.kind=none"]) == 0
    assert json.loads((tmp_path / "u" / "summary.json").read_text())["method"] == "unrolling"
    assert _run(tmp_path, "d", ["constraints.kind=distance", "constraints.form=difference"]) == 0


def test_eval_with_dropped_agents(tmp_path, capsys):
    assert _run(tmp_path, "a") == 0
    assert main(["eval", str(tmp_path / "a"), "-o", "eval.n_async=2", "--out", str(tmp_path / "e")]) == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["eval"]["n_async"] == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=5", "unknown config key 'trainer.epochs'"),
        ("model.variant=big", "model.variant"),
        ("topology.name=erdos_renyi", "disconnected"),
        ("data.source=npz", "data.path"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, override, message):
    extra = ["topology.params={p: 0.01}"] if override == "topology.name=erdos_renyi" else []
    cmd = [sys.executable, "-m", "surf.cli", "run", "simulations/quickstart.yaml", "--out", str(tmp_path / "x"),
           "-o", override] + [a for item in extra for a in ("-o", item)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists()


def test_list_shows_catalogue(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "regular3_paper" in out and "dirichlet" in out and "simulations/quickstart.yaml" in out


def test_non_finite_training_stops_with_one_line_exit_1(tmp_path):
    cmd = [sys.executable, "-m", "surf.cli", "run", "simulations/quickstart.yaml", "--out", str(tmp_path / "n"),
           "--quiet"] + [a for item in TINY + ["model.w0_std=1e38"] for a in ("-o", item)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("surf:")]
    assert len(lines) == 1 and "non-finite" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "n" / "summary.json").exists()
