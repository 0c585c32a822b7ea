"""Shared fixtures: small self-contained tasks and graphs, the tiny CLI config, one session-wide trained tiny run
(every test that only needs *a* trained model uses it instead of training its own) and the summary-schema check
every writer's output goes through."""

import dataclasses
import json
import typing
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import torch

from surf.app.cli import main
from surf.utils.invariant import single_thread

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "simulations" / "quickstart.yaml"
TINY = [
    "num_agents=8", "data.train_per_agent=6", "data.test_per_agent=3", "data.batch_size=3", "model.layers=3",
    "model.hops=1", "model.hidden=4", "trainer.steps=4", "trainer.val_every=2", "trainer.val_tasks=2",
    "trainer.checkpoint_every=2", "eval.test_tasks=2", "eval.dgd_steps=[0.1,1.0]", "eval.momentum_grid=[0.5]",
    "eval.long_factor=2", "topology.name=ring",
]


def out_of_memory_line(out: Path, override: str) -> str:
    """``surf run simulations/inpainting.yaml -o OVERRIDE --out OUT`` in a real process whose address space is capped
    at 8 GiB (so it fails the same way on a machine with more): asserts one line, exit 1, no traceback and nothing
    written, and returns the line."""
    import resource
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "surf.app.cli", "run", "simulations/inpainting.yaml", "--out", str(out), "-o",
           override, "--quiet"]
    cap = 8 * 2**30
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not out.exists()
    return lines[0]


def run_config(config: Path, out: Path, overrides: list[str], resume: bool = False) -> int:
    """``surf run CONFIG --out OUT -o ...`` in this process."""
    args = ["run", str(config), "--out", str(out), "--quiet"]
    for item in overrides:
        args += ["-o", item]
    return main(args + (["--resume"] if resume else []))


def config_keys(cls: type | None = None, prefix: str = "") -> Iterator[str]:
    """Every dotted key of the config schema (``Config`` by default), for fuzzing overrides."""
    from surf.config import Config

    hints = typing.get_type_hints(cls or Config)
    for f in dataclasses.fields(cls or Config):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def as_overrides(values: dict, section: str = "") -> list[str]:
    """``{key: value}`` (a nested mapping is a config section) as ``-o`` overrides with JSON values."""
    prefix = f"{section}." if section else ""
    out = []
    for key, value in values.items():
        nested = isinstance(value, dict)
        out += as_overrides(value, f"{prefix}{key}") if nested else [f"{prefix}{key}={json.dumps(value)}"]
    return out


# the quickstart trains under 10 of its 100 agents dropped per layer; its tiny runs drop 0..1 of their 8
TINY_DROPS = "trainer.scenario_severity=[0,1]"


def run_tiny(out: Path, extra: list[str] = (), resume: bool = False) -> int:
    """``surf run`` of the quickstart config shrunk by TINY (plus ``extra`` overrides) into ``out``."""
    return run_config(QUICKSTART, out, TINY + [TINY_DROPS] + list(extra), resume)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One trained tiny run (SURF on an 8-agent ring) for every test that only reads or re-evaluates a model."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert run_tiny(out) == 0
    return out


@pytest.fixture(scope="session")
def ray_local() -> str:
    """One local Ray instance (2 CPUs) for every test that runs Ray tasks or Ray Train workers; its address."""
    ray = pytest.importorskip("ray")
    from surf.runtime.ray_cluster import start_ray

    start_ray(2, use_gpu=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def assert_valid(document: dict | Path, schema: str = "summary") -> dict:
    """Validate a summary.json / stress.json entry / matrix.json against the published JSON Schema in docs/."""
    if isinstance(document, Path):
        document = json.loads(document.read_text())
    jsonschema.validate(document, json.loads((REPO / "docs" / f"{schema}.schema.json").read_text()))
    return document


def make_task(n=12, m=20, m_test=8, d=5, c=4, seed=0, key=("train", 0)):
    gen = torch.Generator().manual_seed(seed)

    def features(k):
        return torch.cat([torch.randn(n, k, d, generator=gen), torch.ones(n, k, 1)], dim=-1)

    task = SimpleNamespace(
        key=key, x_train=features(m), y_train=torch.randint(0, c, (n, m), generator=gen),
        x_test=features(m_test), y_test=torch.randint(0, c, (n, m_test), generator=gen),
        num_classes=c, num_agents=n, num_features=d + 1, num_tasks=1,
    )
    task.x_pool, task.y_pool = task.x_train.reshape(-1, d + 1), task.y_train.reshape(-1)
    return task


def ring_shift(n=12):
    """Row-normalized ring with self-loops plus one chord, as a dense tensor."""
    adjacency = torch.eye(n)
    for i in range(n):
        adjacency[i, (i + 1) % n] = adjacency[(i + 1) % n, i] = 1.0
    adjacency[0, n // 2] = adjacency[n // 2, 0] = 1.0
    return adjacency / adjacency.sum(1, keepdim=True)


@pytest.fixture
def task():
    return make_task()


@pytest.fixture
def shift():
    return ring_shift().to_sparse_csr()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread (a second one only adds contention on a shared machine)."""
    with single_thread():
        yield


@pytest.fixture
def threads():
    """Restore the intra-op thread count a test changes (the test sets it by calling the fixture)."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)
