"""A real Flower deployment: ``surf deploy --runtime flower-deployment`` starts a SuperLink and SuperNodes as separate
processes on 127.0.0.1 and runs the app through them with ``flwr run``.

One deployment (3 SuperNodes, 9 agents on a small-world graph, seed 7: a graph and seed no other Flower test uses)
runs SURF, whose per-layer metrics must equal the vectorized engine's (1e-5), then DGD, during which the test
SIGKILLs SuperNode 1 and starts it again with the same node config: the run completes, the summary says when node 1
went out and when it rejoined. A second deployment is interrupted with SIGINT mid-run: exit code 130 and no process
of it left. Slow by nature (Flower 1.41 starts a ClientApp process per message): about 2-4 minutes.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surf.app.registry import load_trained
from surf.evaluation.classifier import evaluate_unrolled
from tests.conftest import REPO, assert_valid, run_tiny

pytest.importorskip("flwr")
DEPLOY_RUN = ["seed=7", "num_agents=9", "model.layers=2", "model.hops=1", "eval.test_tasks=1",
              "topology.name=small_world", "topology.params={k: 2, p: 0.3}"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "run"
    assert run_tiny(out, DEPLOY_RUN) == 0
    return out


def start_deploy(run: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "surf.app.cli", "deploy", str(run), "--runtime", "flower-deployment",
               "--out", str(out), *extra]
    # SIGINT back to its default in the child: a suite started as a background job inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler (the Ctrl-C test would test nothing)
    return subprocess.Popen(command, cwd=REPO, env={**ENV, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def processes_using(ports: set[int]) -> list[int]:
    """Live processes whose command line names one of the deployment's loopback ports."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(f"127.0.0.1:{port}" in cmdline for port in ports):
            found.append(int(entry.name))
    return found


def submitting(scratch: Path, timeout: float = 60.0) -> bool:
    """Wait until a `flwr run` of the deployment whose temporary folder is ``scratch`` is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if b"flwr\0run" in (entry / "cmdline").read_bytes() and str(scratch).encode() in \
                        (entry / "environ").read_bytes():
                    return True
            except OSError:
                continue
        time.sleep(0.01)
    return False


class Watcher:
    """Reads the deployment's stdout line by line, remembering its processes and ports."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.lines, self.nodes, self.ports = process, [], {}, set()

    def until(self, pattern: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if match := re.search(r"on 127\.0\.0\.1:(\d+)", line):
                self.ports.add(int(match.group(1)))
            if match := re.match(r"surf: SuperNode (\d+) pid (\d+): (.*)", line):
                command = shlex.split(match.group(3))
                self.nodes[int(match.group(1))] = (int(match.group(2)), command)
                self.ports.add(int(command[command.index("--port") + 1]))
            if re.search(pattern, line):
                return line
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s:\n" + "\n".join(self.lines)
        raise AssertionError(f"the deployment ended before {pattern!r}:\n" + "\n".join(self.lines) +
                             self.process.stderr.read())


def restart(command: list[str], home: Path) -> subprocess.Popen:
    """The killed SuperNode again, with the same node config (a fresh runtime port, its own Flower home)."""
    command = list(command)
    command[command.index("--port") + 1] = str(_free_port())
    env = {**ENV, "FLWR_HOME": str(home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_deployment_equals_engine_and_survives_a_killed_supernode(trained, tmp_path):
    out, scratch = tmp_path / "deployed", tmp_path / "scratch"
    scratch.mkdir()
    process = start_deploy(trained, out, "--nodes", "3", "--baselines", "dgd", "--round-timeout", "20",
                           env={"TMPDIR": str(scratch)})
    watcher, revived = Watcher(process), None
    try:
        watcher.until(r"relay job dgd: step 1/")
        pid, command = watcher.nodes[1]
        os.kill(pid, signal.SIGKILL)  # the SuperNode of shard 1 crashes mid-run ...
        revived = restart(command, tmp_path / "revived_home")  # ... and its machine starts it again
        assert process.wait(timeout=600) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if revived is not None:
            os.killpg(revived.pid, signal.SIGTERM)
            revived.wait(timeout=30)
    summary = assert_valid(out / "summary.json")
    assert summary["runtime"]["name"] == "flower-deployment" and summary["runtime"]["nodes"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "plots", "summary.json"]  # no checkpoints/
    family, model = load_trained(trained)
    engine = evaluate_unrolled(family, model, [family.task("test", 0)], None)
    for metric in ("accuracy", "loss", "grad_norm"):
        assert summary["per_layer"][metric] == pytest.approx(engine[metric], abs=1e-5), metric
    jobs = summary["runtime"]["jobs"]
    assert jobs["surf"]["faults"] == [] and jobs["surf"]["unreported_agents"] == []
    for node in jobs["surf"]["nodes"]:  # every node read its own data file and held 3 of the 9 agents' rows
        assert node["source"].endswith(f"node_{node['node']}.npz") and json.loads(node["shapes"])["x_train"][0] == 3
    events = [(fault["event"], fault["node"], fault["step"]) for fault in jobs["dgd"]["faults"]]
    assert [e[:2] for e in events] == [("out", 1), ("rejoined", 1)], events
    assert events[1][2] > events[0][2] and jobs["dgd"]["unreported_agents"] == []
    assert processes_using(watcher.ports) == []
    assert list(scratch.glob("surf-flower-*")) == []  # its working folder (app, partition, logs) is gone


def test_ctrl_c_tears_every_process_down(trained, tmp_path):
    scratch = tmp_path / "scratch"  # the deployment's temporary folder: its working folder goes there
    scratch.mkdir()
    process = start_deploy(trained, tmp_path / "interrupted", "--nodes", "2", "--baselines",
                           env={"TMPDIR": str(scratch)})
    watcher = Watcher(process)
    try:
        # every SuperNode is up and `flwr run` is submitting the app (the 2-layer job itself can finish between a
        # progress line and the signal, so the signal is not tied to a relay step)
        watcher.until(r"SuperNode 1 pid")
        assert processes_using(watcher.ports)
        assert submitting(scratch), "no `flwr run` of this deployment seen"
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.stderr.read().strip().splitlines()[-1] == "surf: interrupted; every process it started was stopped"
    assert processes_using(watcher.ports) == []
    assert not (tmp_path / "interrupted" / "summary.json").exists()
    # nothing it started outlived it: a `flwr run` still alive after the teardown wrote Flower's default config into
    # the removed working folder
    time.sleep(2)
    assert list(scratch.glob("surf-flower-*")) == []
