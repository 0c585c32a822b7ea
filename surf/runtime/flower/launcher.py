"""A local Flower deployment: one SuperLink and M SuperNodes as separate processes on 127.0.0.1 (insecure mode,
loopback only), the SURF app submitted with ``flwr run``, and every process torn down on success, error, Ctrl-C and
SIGTERM.

Every process starts in its own session (process group). Flower's own children (the SuperExec of the SuperLink and
of every SuperNode, the ServerApp and ClientApp processes they spawn) are found by walking ``/proc`` while the
deployment runs; teardown sends SIGTERM to every group and every process seen, waits, then SIGKILLs what is left.
Nothing is installed: the app is a ``pyproject.toml`` whose components are SURF's importable modules, runtime
dependency installation is off, telemetry and update checks are off, and ``FLWR_HOME`` is a private folder.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from surf.config import to_dict
from surf.data.shares import Share, share_path
from surf.evaluation.summary import Summary, load_summary
from surf.families.classifier.family import ClassifierFamily
from surf.runtime.flower.deploy import BASELINES
from surf.runtime.flower.partition import fingerprint, write_partition
from surf.runtime.flower.simulation import OFFLINE_ENV
from surf.utils.errors import ConfigError, SurfError

CONNECTION = "surf-local"
APP_TOML = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "surf-deploy"
version = "1.0.0"
description = "SURF agents on a graph as Flower ClientApps; the ServerApp relays neighbour messages"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "surf"

[tool.flwr.app.components]
serverapp = "surf.runtime.flower.app:serverapp"
clientapp = "surf.runtime.flower.app:clientapp"

[tool.flwr.app.config]
{config}
"""


def say(line: str) -> None:
    """Progress on stdout, flushed (a caller reading the pipe sees every line when it is printed)."""
    print(line, flush=True)


class DeploymentError(SurfError):
    """The local deployment failed (a process died, the app failed or timed out); the message is one line."""

    exit_code = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _environ(pid: int) -> bytes:
    """A process's environment (empty when it is gone or not readable)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] != "Z" and stat[2] == start


def _toml(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value).lower() if isinstance(value, bool) else \
        str(value)


class LocalDeployment:
    """Context manager: ``start()`` the SuperLink and one SuperNode per data file, ``run(config)`` the app, and on
    exit tear every process down. ``echo`` prints progress lines."""

    def __init__(self, workdir: Path, node_files: list[Path], echo: Callable[[str], None] = say) -> None:
        self.workdir, self.node_files, self.echo = Path(workdir), list(node_files), echo
        self.bin = Path(sys.executable).parent
        self.processes: list[subprocess.Popen] = []
        self.seen: dict[int, int] = {}  # pid -> start time of every process of the deployment seen so far
        self.port = free_port()
        self.logs = self.workdir / "logs"
        self.previous: object = None

    # ------------------------------------------------------------------ processes
    def env(self, home: str) -> dict[str, str]:
        env = {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(self.workdir / home),
               "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1", "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}
        source = str(Path(__file__).resolve().parents[3])  # ClientApp processes import this source tree
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
        return env

    def spawn(self, name: str, command: list[str], home: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(command, env=self.env(home), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        self.observe()
        return process

    def executable(self, name: str) -> str:
        path = self.bin / name
        if not path.exists():
            raise ConfigError(f"--runtime flower-deployment needs Flower's command-line tools ({name}); install "
                              "them with pip install -e '.[flower]'")
        return str(path)

    def observe(self, adopt: bool = False) -> None:
        """Record every live descendant of the processes started here (Flower starts its own in new sessions);
        ``adopt``: also every process whose environment names this deployment's working folder (``FLWR_HOME``), such
        as a ``flwr run`` whose ``subprocess.run`` a Ctrl-C interrupted before it could kill it."""
        children: dict[int, list[int]] = {}
        stack = [p.pid for p in self.processes]
        mark = f"FLWR_HOME={self.workdir}{os.sep}".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
                children.setdefault(stat[0], []).append(int(entry.name))
                if adopt and int(entry.name) != os.getpid() and mark in _environ(int(entry.name)):
                    stack.append(int(entry.name))
        while stack:
            pid = stack.pop()
            if (stat := _stat(pid)) is not None:
                self.seen.setdefault(pid, stat[2])
            stack.extend(children.get(pid, []))

    def supernode_command(self, shard: int) -> list[str]:
        return [self.executable("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                "--host", "127.0.0.1", "--port", str(free_port()), "--max-wait-time", "60",
                "--node-config", f'data="{self.node_files[shard]}"']

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        link = self.spawn("superlink", [self.executable("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                        "--port", str(self.port), "--disable-runtime-dependency-installation"],
                          "superlink")
        self.echo(f"surf: SuperLink pid {link.pid} on 127.0.0.1:{self.port} (insecure, loopback)")
        self._wait_healthy(link)
        for shard in range(len(self.node_files)):
            command = self.supernode_command(shard)
            node = self.spawn(f"supernode_{shard}", command, f"node_{shard}")
            self.echo(f"surf: SuperNode {shard} pid {node.pid}: {shlex.join(command)}")

    def _wait_healthy(self, link: subprocess.Popen, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if link.poll() is not None:
                raise DeploymentError(f"flower-superlink exited with code {link.returncode}; see {self.logs}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise DeploymentError(f"flower-superlink did not answer within {timeout:.0f} s; see {self.logs}")

    # ------------------------------------------------------------------ the app
    def run(self, run_config: dict, status: Path, timeout: float) -> dict:
        """``flwr run`` the SURF app with ``run_config``; wait for its summary (printing progress); return it."""
        app = self.workdir / "app"
        app.mkdir(exist_ok=True)
        (app / "pyproject.toml").write_text(APP_TOML.format(config="\n".join(
            f"{key} = {_toml(value)}" for key, value in run_config.items())))
        home = self.workdir / "flwr_cli"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                          f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
        submitted = subprocess.run([self.executable("flwr"), "run", str(app), CONNECTION, "--format", "json"],
                                   env=self.env("flwr_cli"), capture_output=True, text=True, timeout=300)
        if submitted.returncode != 0:
            lines = (submitted.stdout + submitted.stderr).strip().splitlines() or ["no output"]
            raise DeploymentError(f"flwr run failed: {lines[-1][:300]}")
        return self._wait(status, timeout)

    def _wait(self, status: Path, timeout: float) -> dict:
        deadline, printed = time.monotonic() + timeout, 0
        progress, summary, error = status / "progress.txt", status / "summary.json", status / "error.txt"
        while True:
            self.observe()
            if progress.exists():
                lines = progress.read_text().splitlines()
                for line in lines[printed:]:
                    self.echo(f"surf: {line}")
                printed = len(lines)
            if summary.exists():
                return json.loads(summary.read_text())
            if error.exists():
                raise DeploymentError(f"the ServerApp failed: {error.read_text().strip()}")
            if self.processes[0].poll() is not None:
                raise DeploymentError(f"flower-superlink exited with code {self.processes[0].returncode}")
            if time.monotonic() > deadline:
                raise DeploymentError(f"the deployment did not finish within {timeout:.0f} s (--deploy-timeout)")
            time.sleep(0.2)

    # ------------------------------------------------------------------ teardown
    def __enter__(self) -> LocalDeployment:
        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        try:
            self.previous = signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not in the main thread
            self.previous = None
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            self.stop()
        finally:
            if self.previous is not None:
                signal.signal(signal.SIGTERM, self.previous)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every process group and every process seen, then SIGKILL whatever is still alive."""
        self.observe(adopt=True)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in self.processes:
                try:
                    os.killpg(process.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            for pid, start in self.seen.items():
                if _alive(pid, start):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_alive(pid, start) for pid, start in self.seen.items()):
                for process in self.processes:
                    process.poll()
                time.sleep(0.1)
        for process in self.processes:
            process.wait(timeout=5)

    def alive(self) -> list[int]:
        """The processes of the deployment still running (empty after :meth:`stop`)."""
        return [pid for pid, start in self.seen.items() if _alive(pid, start)]


def deploy_locally(exp: ClassifierFamily, run_dir: Path, nodes: int, num_tasks: int, partition: Path | None = None,
                   round_timeout: float = 60.0, baselines: tuple[str, ...] = BASELINES, rejoin: str = "resume",
                   timeout: float = 7200.0, echo: Callable[[str], None] = say) -> Summary:
    """``surf deploy --runtime flower-deployment``: the run's jobs on a local SuperLink with ``nodes`` SuperNodes,
    each reading its data file (``partition``, or one written for this deployment). Returns the summary; the working
    folder (app, logs, Flower state) is removed, except after a failed deployment, when it is kept and named."""
    if partition is not None:
        check_partition(exp, Path(partition), nodes)
    workdir = Path(tempfile.mkdtemp(prefix="surf-flower-"))
    failed = False
    try:
        files = [share_path(Path(partition).resolve(), s) for s in range(nodes)] if partition is not None else \
            [p.resolve() for p in write_partition(exp, nodes, num_tasks, workdir / "partition")]
        (workdir / "config.yaml").write_text(yaml.safe_dump(to_dict(exp.cfg), sort_keys=False))
        status = workdir / "status"
        status.mkdir()
        run_config = {"run-dir": str(Path(run_dir).resolve()), "config": str(workdir / "config.yaml"),
                      "nodes": nodes, "tasks": num_tasks, "round-timeout": float(round_timeout),
                      "baselines": ",".join(baselines), "rejoin": rejoin, "status": str(status),
                      "connect-timeout": 120.0}
        with LocalDeployment(workdir, files, echo) as deployment:
            deployment.start()
            deployment.run(run_config, status, timeout)
        return load_summary(status / "summary.json")
    except DeploymentError:
        failed = True
        raise
    finally:
        if failed:
            echo(f"surf: the deployment's logs are in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def check_partition(exp: ClassifierFamily, folder: Path, nodes: int) -> None:
    """A partition folder cut for this run and this number of nodes (one line naming the fix otherwise)."""
    expected = fingerprint(exp, nodes)
    for s in range(nodes):
        if Share.peek(share_path(folder, s)).get("fingerprint") != expected:
            raise ConfigError(f"{share_path(folder, s)} was cut for another run or number of nodes; rerun `surf "
                              f"partition RUN --nodes {nodes} --out DIR` for this run")
