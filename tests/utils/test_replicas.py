"""Copies of a module are built in order, with a plain loop's random draws, and only when they fit in memory."""

import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from surf.utils import replicas as replicas_mod
from surf.utils.replicas import replicas
from tests.conftest import REPO


def test_copies_are_a_plain_loops():
    torch.manual_seed(0)
    looped = [nn.Linear(3, 2) for _ in range(4)]
    torch.manual_seed(0)
    built = replicas(lambda: nn.Linear(3, 2), 4)
    assert len(built) == 4 and all(torch.equal(a.weight, b.weight) for a, b in zip(looped, built, strict=True))


def test_copies_past_the_memory_are_a_memory_error_before_the_second(monkeypatch):
    monkeypatch.setattr(replicas_mod, "physical_memory", lambda: 1000)
    calls = []

    def build():
        calls.append(1)
        return nn.Linear(10, 10)  # 110 floats: 440 bytes

    assert len(replicas(build, 2)) == 2  # 880 bytes fit
    calls.clear()
    with pytest.raises(MemoryError, match="3 copies of a Linear would allocate 1320 bytes"):
        replicas(build, 3)
    assert calls == [1]  # only the first was built


def test_a_billion_flow_blocks_is_one_line_and_writes_nothing(tmp_path):
    """It built Glow blocks in a Python loop for hours; the run directory was written before the model. A real
    process with its address space capped, so that a regression fails in minutes rather than hanging."""
    import resource

    cmd = [sys.executable, "-m", "surf.app.cli", "run", "simulations/inpainting.yaml", "--out", str(tmp_path / "x"),
           "-o", "inpainting.flow_depth=1000000000", "--quiet"]
    cap = 8 * 2**30
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert re.match(r"surf: error: out of memory asking for [\d,.]+ GiB; lower the sizes", lines[0])
    assert not (tmp_path / "x").exists()
