"""Keyed randomness: Philox4x32-10 matches the Random123 known-answer vectors, and per-agent draws depend on the
agent's id only (a node's share of a task draws exactly its rows of the full draw)."""

import numpy as np
import torch

from surf.data.batches import batch_indices, initial_weights
from surf.utils.seeding import keyed_integers, keyed_normal, keyed_words, philox4x32
from tests.conftest import make_task

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4], key[2] -> result[4]
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def test_philox_known_answers():
    for counter, key, expected in KAT:
        assert tuple(int(word) for word in philox4x32(counter, key)) == expected


def test_agent_draws_depend_on_the_agent_only():
    everyone = keyed_words(0, ("w0", "test", 3), torch.arange(1000), 37)
    some = torch.tensor([999, 5, 500])
    assert np.array_equal(keyed_words(0, ("w0", "test", 3), some, 37), everyone[some.numpy()])
    assert np.array_equal(keyed_words(0, ("w0", "test", 3), some, 10), everyone[some.numpy(), :10])
    assert not np.array_equal(keyed_words(1, ("w0", "test", 3), some, 37), everyone[some.numpy()])
    assert np.array_equal(keyed_words(0, ("k",), torch.tensor([2**40 + 7]), 4),
                          keyed_words(0, ("k",), torch.tensor([3, 2**40 + 7]), 4)[1:])


def test_distributions():
    z = keyed_normal(0, ("n",), torch.arange(200), 501)
    assert z.shape == (200, 501) and z.dtype == torch.float32
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    k = keyed_integers(0, ("i",), torch.arange(300), 400, 7)
    counts = torch.bincount(k.flatten(), minlength=7).float() / k.numel()
    assert k.min() == 0 and k.max() == 6 and (counts - 1 / 7).abs().max() < 0.01


def test_a_share_of_a_task_draws_its_rows_of_the_full_draw():
    task = make_task(n=12)
    task.agents = None
    share = make_task(n=12)
    agents = torch.tensor([7, 2, 11])
    for name in ("x_train", "y_train", "x_test", "y_test"):
        setattr(share, name, getattr(share, name)[agents])
    share.agents = agents
    assert torch.equal(initial_weights(share, 3, 2.0), initial_weights(task, 3, 2.0)[agents])
    assert torch.equal(batch_indices(share, 3, 4, 5), batch_indices(task, 3, 4, 5)[agents])
    assert torch.equal(batch_indices(share, 3, 4, 5, 2), batch_indices(task, 3, 4, 5, 2)[agents])
    assert not torch.equal(batch_indices(task, 3, 4, 5, 2), batch_indices(task, 3, 4, 5))
