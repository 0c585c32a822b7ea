"""Copies of a module are built in order, with a plain loop's random draws, and only when they fit in memory; so
are single allocations sized by the config."""

import re

import pytest
import torch
from torch import nn

from surf.utils import replicas as replicas_mod
from surf.utils.replicas import check_fits, replicas
from tests.conftest import out_of_memory_line


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


def test_an_allocation_past_the_memory_is_a_memory_error_naming_its_bytes(monkeypatch):
    monkeypatch.setattr(replicas_mod, "physical_memory", lambda: 1000)
    check_fits(1000, "the taps")
    with pytest.raises(MemoryError, match="^the taps would allocate 1001 bytes$"):
        check_fits(1001, "the taps")
    monkeypatch.setattr(replicas_mod, "physical_memory", lambda: None)  # an OS that does not say: no check
    check_fits(2**80, "the taps")


def test_a_billion_flow_blocks_is_one_line_and_writes_nothing(tmp_path):
    """It built Glow blocks in a Python loop for hours; the run directory was written before the model (the capped
    address space makes a regression fail in minutes rather than hang)."""
    line = out_of_memory_line(tmp_path / "x", "inpainting.flow_depth=1000000000")
    assert re.match(r"surf: error: out of memory asking for [\d,.]+ GiB; lower the sizes", line)


def test_more_tasks_per_step_than_the_memory_holds_is_one_line_and_writes_nothing(tmp_path):
    """trainer.tasks_per_step=2**63-1: the first step drew tasks until the memory ran out (the process was killed
    with no message, its run directory written)."""
    line = out_of_memory_line(tmp_path / "x", f"trainer.tasks_per_step={2**63 - 1}")
    assert re.match(r"surf: error: out of memory asking for [\d,.]+ GiB; lower the sizes", line)


def test_tensor_bytes_counts_a_dataclass_tensors():
    from surf.families.sparse.family import SparseTask
    from surf.utils.replicas import tensor_bytes

    task = SparseTask(("train", 0), torch.zeros(4, 3), torch.zeros(4, 5, dtype=torch.float64), torch.zeros(3, 5))
    assert tensor_bytes(task) == 4 * 12 + 8 * 20 + 4 * 15
