"""Thread-count-invariant scalar products: the same gradients as autograd's on one thread, the same bits on two,
and a quickstart-sized meta-step that gives the same parameters with 1 or 2 threads."""

import hashlib

import pytest
import torch

from surf.utils.invariant import scaled, shifted, single_thread
from tests.conftest import QUICKSTART

SIZE = (100, 65, 10)  # the quickstart's agents x (d+1) x C: over ATen's 32,768-element split of a full reduction


def _gradients(op, threads: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scalar = torch.randn((), generator=gen).requires_grad_()
    x = torch.randn(SIZE, generator=gen).requires_grad_()
    weight = torch.randn(SIZE, generator=gen)
    torch.set_num_threads(threads)
    (op(scalar, x) * weight).sum().backward()
    return scalar.grad, x.grad


@pytest.mark.parametrize("name", ["scaled", "shifted"])
def test_one_thread_gradients_are_autograds_bit_for_bit(threads, name):
    ours, plain = {"scaled": (scaled, torch.mul), "shifted": (lambda s, x: shifted(x, s), torch.add)}[name]
    for got, want in zip(_gradients(ours, 1), _gradients(lambda s, x: plain(s, x), 1), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("op", [scaled, lambda s, x: shifted(x, s)], ids=["scaled", "shifted"])
def test_two_threads_give_the_one_thread_bits(threads, op):
    for got, want in zip(_gradients(op, 2, seed=1), _gradients(op, 1, seed=1), strict=True):
        assert torch.equal(got, want)


def test_plain_autograd_differs_with_two_threads_which_is_why_the_module_exists(threads):
    """The control: autograd's own full reduction splits by thread count (if a torch release stops doing so, this
    test says the module may go)."""
    differs = [not torch.equal(_gradients(torch.mul, 2, seed)[0], _gradients(torch.mul, 1, seed)[0])
               for seed in range(8)]
    assert any(differs)


def test_single_thread_restores_the_count_and_shifted_keeps_a_one_element_shape(threads):
    threads(2)
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    bias = torch.zeros(1, requires_grad=True)
    shifted(torch.ones(5), bias).sum().backward()
    assert bias.grad.shape == (1,) and bias.grad.item() == 5.0
    with torch.no_grad():  # no autograd function where no gradient is wanted
        assert shifted(torch.ones(2), bias).grad_fn is None and scaled(bias[0], torch.ones(2)).grad_fn is None


def _quickstart_parameters_after(steps: int, threads: int) -> str:
    from surf.app.registry import build_family, load_config
    from surf.training.trainer import MetaTrainer

    family = build_family(load_config(QUICKSTART, [f"threads={threads}", "trainer.val_tasks=1"]))
    trainer = MetaTrainer(family)
    for step in range(steps):
        trainer.primal_dual_step(trainer.train_tasks(step))
    digest = hashlib.sha256()
    for parameter in trainer.model.parameters():
        digest.update(parameter.detach().numpy().tobytes())
    return digest.hexdigest()


def test_the_quickstart_meta_step_gives_the_same_bits_on_one_and_two_threads(threads):
    """Three meta-steps of the shipped model at full size (the MLP's output layer leaves zero after the first, so
    the second and third exercise every product) on 1 and on 2 threads."""
    assert _quickstart_parameters_after(3, 2) == _quickstart_parameters_after(3, 1)
