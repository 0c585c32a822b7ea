"""Killed runs resume to exactly the uninterrupted result: real SIGKILL, SIGTERM and SIGINT sent to a real process
at random points of a tiny run (mid-step, during validation, while a checkpoint is being written, during evaluation).

Each signal kills the same run several times in a row; after every kill ``surf run --resume`` continues it, and the
final ``summary.json``, ``metrics.jsonl`` and ``best.pt`` equal those of the uninterrupted ``tiny_run``. The
processes come from a fork server that has already imported SURF (a fresh interpreter per run would spend most of
the test importing torch); ``SURF_PAUSE_AT`` only tells the test where the process is, the signals are real.
"""

import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time

import pytest
import torch

from surf.app.cli import main
from surf.utils.faults import PAUSE_AT, PAUSE_FILE
from tests.conftest import run_tiny

# the tiny run (trainer.steps=4, val_every=2, checkpoint_every=2), point by point in the order it reaches them
TIMELINE = ["validate:0", "step:1", "step:2", "validate:2", "checkpoint:2", "step:3", "step:4", "validate:4",
            "checkpoint:4", "evaluate"]


def points(sig: signal.Signals) -> list[str]:
    """A validation, a checkpoint write and a mid-step point drawn at random (seeded by the signal), then evaluation."""
    rng = random.Random(int(sig))
    kinds = [[p for p in TIMELINE if p.startswith(kind)] for kind in ("validate", "checkpoint", "step")]
    return sorted({rng.choice(kind) for kind in kinds} | {"evaluate"}, key=TIMELINE.index)


def _child(out: str, resume: bool, pause: str | None, pause_file: str) -> None:
    if pause:
        os.environ[PAUSE_AT], os.environ[PAUSE_FILE] = pause, pause_file
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child exits right after
    sys.exit(run_tiny(out, resume=resume))


@pytest.fixture(scope="module")
def spawner():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["surf.app.cli", "surf.app.runner", "tests.conftest", "torch_geometric",
                                    "surf.graphs.filter", "surf.reporting.run_plots", "matplotlib.pyplot"])
    return context


def run_until(spawner, out, tmp_path, resume, pause=None, sig=None) -> int:
    """Run (or resume) the tiny run; with ``pause``, send ``sig`` once it is there. Returns the exit code."""
    pause_file = tmp_path / "paused"
    pause_file.unlink(missing_ok=True)
    process = spawner.Process(target=_child, args=(str(out), resume, pause, str(pause_file)))
    process.start()
    if pause:
        deadline = time.monotonic() + 120
        while not pause_file.exists() and process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pause_file.exists(), f"the run ended before reaching {pause} (exit code {process.exitcode})"
        os.kill(process.pid, sig)
    process.join(180)
    return process.exitcode


def same_best(a, b) -> bool:
    first, second = (torch.load(p, weights_only=False) for p in (a, b))
    return first.keys() == second.keys() and first["best_val"] == second["best_val"] and all(
        torch.equal(first["model"][k], second["model"][k]) for k in first["model"])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_killed_run_resumes_to_the_uninterrupted_result(spawner, tiny_run, tmp_path, sig):
    out = tmp_path / "run"
    stops = points(sig)
    assert len(stops) >= 3 and "evaluate" in stops
    for i, point in enumerate(stops):
        code = run_until(spawner, out, tmp_path, i > 0, point, sig)
        graceful = sig != signal.SIGKILL and not (sig == signal.SIGTERM and point == "evaluate")
        assert code == (130 if graceful else -sig), (point, code)
        assert not (out / "summary.json").exists()
    assert run_until(spawner, out, tmp_path, True) == 0
    assert not list(out.rglob("*.tmp"))  # a write the kill cut short left its temporary file: resume removes it
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, tiny_run))
    assert {k: v for k, v in summary.items() if k != "git_sha"} == {k: v for k, v in reference.items()
                                                                   if k != "git_sha"}
    assert (out / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    assert same_best(out / "checkpoints" / "best.pt", tiny_run / "checkpoints" / "best.pt")


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, tiny_run, capsys):
    out = tmp_path / "run"
    assert run_tiny(out, ["trainer.steps=2"]) == 0
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert run_tiny(out, ["trainer.steps=2"], resume=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"checkpoint {last} is truncated or corrupt" in err[0]
    (out / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt is truncated or corrupt" in err[0]


def test_half_written_metrics_row_is_dropped_on_resume(tmp_path):
    from surf.training.rundir import RunDir

    run = RunDir(tmp_path)
    run.metrics.write_text('{"step": 0}\n{"step": 1}\n{"step": 2}\n{"ste')
    run.truncate_metrics(1)
    assert run.read_metrics() == [{"step": 0}, {"step": 1}]
    run.truncate_metrics(-1)
    assert run.read_metrics() == []


def _damage_metrics(run):
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join([lines[0], '{"step": 1, "lo\n', *lines[1:]]))


def _another_model(run):
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(7)  # the shape another config's model would have
    torch.save(state, run / "checkpoints" / "last.pt")


DAMAGE = {  # what happened to a copy of the finished tiny run -> what the one line of --resume must say
    "last.pt of another model": (_another_model, "last.pt does not fit this run's config"),
    "an unreadable warm_start.json": (lambda run: (run / "warm_start.json").write_text('{"step": 0.'),
                                      "warm_start.json is not a readable warm-start record"),
    "a damaged row inside metrics.jsonl": (_damage_metrics, "metrics.jsonl line 2 is not a metrics row"),
    "summary.json a folder": (lambda run: ((run / "summary.json").unlink(), (run / "summary.json").mkdir()),
                              "summary.json is a folder, not a file"),
    "an empty config.yaml": (lambda run: (run / "config.yaml").write_text(""), "config.yaml is empty or not a config"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_resume_of_a_damaged_run_directory_is_one_line_and_writes_nothing(kind, tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    damage, expected = DAMAGE[kind]
    damage(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run_tiny(out, resume=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_rebuilds_what_last_pt_and_the_search_determine(tiny_run, tmp_path):
    """A finished run whose best.pt was damaged and whose warm_start.json was deleted: --resume rewrites best.pt
    from last.pt and runs the (deterministic) heavy-ball search again: both are exactly as they were."""
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    (out / "checkpoints" / "best.pt").write_bytes(b"damaged")
    (out / "warm_start.json").unlink()
    assert run_tiny(out, resume=True) == 0
    assert (out / "warm_start.json").read_text() == (tiny_run / "warm_start.json").read_text()
    assert same_best(out / "checkpoints" / "best.pt", tiny_run / "checkpoints" / "best.pt")
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, tiny_run))
    assert {k: v for k, v in summary.items() if k != "git_sha"} == {k: v for k, v in reference.items()
                                                                   if k != "git_sha"}


class Killed(BaseException):
    """The process dies here: nothing after this point runs (nor any handler of SURF's)."""


def test_a_run_killed_between_its_two_checkpoint_files_resumes_exactly(tiny_run, tmp_path, monkeypatch):
    """A checkpoint is two files. The run dies right after the first of its last checkpoint is in place; the
    resumed run must still end with the uninterrupted best.pt (with last.pt first, resume found the last step
    done and never rewrote the best.pt of the step before)."""
    import surf.training.trainer as trainer_module

    save = trainer_module.atomic_save

    def dies_after_the_first_final_file(state, path, **kwargs):
        save(state, path, **kwargs)
        if state["step"] == 4:  # the tiny run's last checkpoint
            raise Killed

    out = tmp_path / "run"
    monkeypatch.setattr(trainer_module, "atomic_save", dies_after_the_first_final_file)
    with pytest.raises(Killed):
        run_tiny(out)
    monkeypatch.setattr(trainer_module, "atomic_save", save)
    assert run_tiny(out, resume=True) == 0
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, tiny_run))
    assert {k: v for k, v in summary.items() if k != "git_sha"} == {k: v for k, v in reference.items()
                                                                   if k != "git_sha"}
    assert (out / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    assert same_best(out / "checkpoints" / "best.pt", tiny_run / "checkpoints" / "best.pt")


def test_a_full_disk_is_one_line_exit_1_and_resume_continues(tiny_run, tmp_path, monkeypatch, capsys):
    """The disk fills up while a checkpoint is written (half of it made it to disk): one line naming the file, no
    temporary file left, the previous checkpoint intact; once there is space, --resume ends at the same result."""
    import errno
    from pathlib import Path

    write_bytes = Path.write_bytes

    def full_at_step_4(self, data):
        if self.name.startswith("last.pt.") and torch.load(io.BytesIO(data), weights_only=False)["step"] == 4:
            write_bytes(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_bytes(self, data)

    out = tmp_path / "run"
    monkeypatch.setattr(Path, "write_bytes", full_at_step_4)
    assert run_tiny(out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"surf: error: no space left on the disk writing {out / 'checkpoints' / 'last.pt'}; free some and "
                   "rerun; the previous checkpoint is intact: continue with --resume"]
    assert not list(out.rglob("*.tmp"))
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 2
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    assert run_tiny(out, resume=True) == 0
    assert (out / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    assert same_best(out / "checkpoints" / "best.pt", tiny_run / "checkpoints" / "best.pt")


def test_a_second_run_of_the_same_folder_is_refused_while_the_first_trains(spawner, tiny_run, tmp_path, capsys):
    """The same command typed twice, or a cluster job requeued while the first still runs, would interleave two
    processes' checkpoints and metrics: the second is one line naming the first (a real process, paused mid-run).
    Once the first is killed, its stale lock is taken over and --resume ends at the uninterrupted result."""
    out, pause_file = tmp_path / "run", tmp_path / "paused"
    first = spawner.Process(target=_child, args=(str(out), False, "step:3", str(pause_file)))
    first.start()
    deadline = time.monotonic() + 120
    while not pause_file.exists() and first.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pause_file.exists(), f"the first run ended before step 3 (exit code {first.exitcode})"
    capsys.readouterr()
    assert run_tiny(out, resume=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"run directory {out} is being run by process {first.pid}" in err[0], err
    os.kill(first.pid, signal.SIGKILL)
    first.join(60)
    assert run_tiny(out, resume=True) == 0
    assert (out / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    assert not (tmp_path / "run.lock").exists()
