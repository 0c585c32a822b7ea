"""Arithmetic whose rounding does not depend on the number of CPU threads.

ATen splits a reduction to a *single* value (a 0-dim result) over 32,768 elements or more between its threads and
adds the partial sums, so its rounding changes with ``torch.set_num_threads``. Autograd makes exactly such
reductions for a scalar parameter that multiplies or shifts a whole tensor — a filter tap, a layer's step and
momentum, the coordinate MLP's output bias — so those products are written here with their one reduction on one
thread (and the coordinate MLP's backward runs its long products, whose rounding MKL splits by thread count, inside
:func:`single_thread`: on an AMD EPYC only ``A^T G`` did, on an Intel Xeon with AVX-512 the weights' GEMV too).
Every other op of the compact meta-step gives the same bits on any count (checked op by op with a dispatch mode,
BENCHMARKS.md; ``tests/utils/test_invariant.py`` checks the quickstart's meta-step). With
them, a run gives the same numbers with ``threads: 1`` or ``threads: 2``, and the same numbers as before this
module (the one-thread reduction is the one autograd ran): more threads buy speed, never other results.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.autograd.function import once_differentiable


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the enclosed ops on one intra-op thread (a few microseconds to switch), then restore the count."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _total(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of every element, reduced on one thread."""
    with single_thread():
        return tensor.sum()


class _Scaled(torch.autograd.Function):
    """``scale * x`` for a 0-dim ``scale``; its gradient ``sum(grad * x)`` reduced on one thread."""

    @staticmethod
    def forward(ctx, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale, x)
        return scale * x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        scale, x = ctx.saved_tensors
        grad_scale = _total(grad * x) if ctx.needs_input_grad[0] else None
        return grad_scale, grad * scale if ctx.needs_input_grad[1] else None


class _Shifted(torch.autograd.Function):
    """``x + shift`` for a one-element ``shift``; its gradient ``sum(grad)`` reduced on one thread."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        ctx.shift_shape = shift.shape
        return x + shift

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return grad, _total(grad).reshape(ctx.shift_shape) if ctx.needs_input_grad[1] else None


def scaled(scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``scale * x`` (``scale`` 0-dim) with a thread-count-invariant gradient for ``scale``."""
    if not (torch.is_grad_enabled() and scale.requires_grad):
        return scale * x
    return _Scaled.apply(scale, x)


def shifted(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x + shift`` (``shift`` one element) with a thread-count-invariant gradient for ``shift``."""
    if not (torch.is_grad_enabled() and shift.requires_grad):
        return x + shift
    return _Shifted.apply(x, shift)
