"""Returning freed heap memory to the OS (glibc ``malloc_trim``; a no-op elsewhere) after layers and gradients."""

import torch

import surf.utils.memory as memory


def test_release_runs_where_the_c_library_has_malloc_trim_and_is_a_no_op_elsewhere(monkeypatch):
    memory.release_freed_memory()  # glibc here: malloc_trim(0); must not raise
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    memory.release_freed_memory()


def test_release_after_gradient_fires_once_per_backward_through_the_tensor(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1))
    x = torch.randn(3, requires_grad=True)
    y = x * 2
    memory.release_after_gradient(y)
    memory.release_after_gradient(torch.randn(3))  # no gradient: no hook
    (y.sum() * 3).backward()
    assert calls == [1]
    assert torch.equal(x.grad, torch.full((3,), 6.0))
