"""Shared fixtures: small self-contained tasks and graphs (independent of the data and topology modules)."""

from types import SimpleNamespace

import pytest
import torch


def make_task(n=12, m=20, m_test=8, d=5, c=4, seed=0, key=("train", 0)):
    gen = torch.Generator().manual_seed(seed)

    def features(k):
        return torch.cat([torch.randn(n, k, d, generator=gen), torch.ones(n, k, 1)], dim=-1)

    task = SimpleNamespace(
        key=key, x_train=features(m), y_train=torch.randint(0, c, (n, m), generator=gen),
        x_test=features(m_test), y_test=torch.randint(0, c, (n, m_test), generator=gen),
        num_classes=c, num_agents=n, num_features=d + 1,
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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
