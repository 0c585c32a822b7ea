"""The shared tuning cache: a hit returns what the search computes, the key follows content (seed, grid, code),
an unreadable entry is searched again, one run searches once in memory, and nothing is cached outside
``shared_tuning``."""

import json

import pytest

from surf.app.registry import config_from_dict
from surf.evaluation import baselines
from surf.evaluation.baselines import tune_baseline
from surf.evaluation.tuning_cache import run_tuning, shared_tuning
from surf.families.classifier.family import ClassifierFamily

TINY = ["num_agents=6", "data.train_per_agent=6", "data.test_per_agent=3", "data.batch_size=3", "model.layers=2",
        "model.hops=1", "trainer.val_tasks=2", "threads=1", "eval.dgd_steps=[0.03, 1.0, 10.0]"]


@pytest.fixture
def searches(monkeypatch):
    """Counts the grid searches actually run."""
    calls = []
    original = baselines._mean_curves

    def counted(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(baselines, "_mean_curves", counted)
    return calls


def _family(*extra: str) -> ClassifierFamily:
    return ClassifierFamily(config_from_dict({}, TINY + list(extra)))


def test_hit_equals_search_and_key_follows_content(tmp_path, searches):
    uncached = tune_baseline(_family(), "dgd", rounds=3)
    with shared_tuning(tmp_path):
        first = tune_baseline(_family(), "dgd", rounds=3)
        again = tune_baseline(_family("trainer.lr=0.5"), "dgd", rounds=3)  # a setting tuning never reads
        assert len(searches) == 2 and first == again == uncached
        tune_baseline(_family("seed=1"), "dgd", rounds=3)  # other tasks
        tune_baseline(_family("eval.dgd_steps=[0.1, 1.0]"), "dgd", rounds=3)  # another grid
        tune_baseline(_family(), "dgd", rounds=4)
        assert len(searches) == 5
    assert len(list(tmp_path.glob("*.json"))) == 4
    tune_baseline(_family(), "dgd", rounds=3)  # outside the block: searched
    assert len(searches) == 6


def test_unreadable_entry_is_searched_again(tmp_path, searches):
    with shared_tuning(tmp_path):
        chosen = tune_baseline(_family(), "dgd", rounds=3)
        (entry,) = tmp_path.glob("*.json")
        entry.write_text("{truncated")
        assert tune_baseline(_family(), "dgd", rounds=3) == chosen and len(searches) == 2
        assert json.loads(entry.read_text())["hyper"] == chosen


def test_one_run_searches_once_in_memory_and_keeps_an_open_store(tmp_path, searches):
    uncached = tune_baseline(_family(), "dgd_momentum", rounds=3)
    with run_tuning():
        first = tune_baseline(_family(), "dgd_momentum", rounds=3)
        first["step"] = -1.0  # a caller's copy: the stored result is not changed through it
        assert tune_baseline(_family(), "dgd_momentum", rounds=3) == uncached and len(searches) == 2
        tune_baseline(_family(), "dgd_momentum", rounds=4)
        assert len(searches) == 3
    tune_baseline(_family(), "dgd_momentum", rounds=3)  # the run ended: its memory with it
    assert len(searches) == 4
    with shared_tuning(tmp_path), run_tuning():  # inside a sweep's store, a run uses that store
        tune_baseline(_family(), "dgd_momentum", rounds=3)
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_the_key_of_a_sparse_graph_follows_its_content_without_densifying_it(monkeypatch):
    """A graph of 100,000 agents made dense for its key took 40 GB (a MemoryError traceback in `surf run`)."""
    import torch

    from surf.evaluation.tuning_cache import tuning_key

    ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    graphs = [torch.sparse_coo_tensor(ring, torch.tensor(v), (100_000, 100_000), check_invariants=False).to_sparse_csr()
              for v in ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.25])]
    monkeypatch.setattr(torch.Tensor, "to_dense", lambda self: pytest.fail("the key densified a sparse tensor"))
    keys = [tuning_key({"grid": [1.0]}, [], [graph]) for graph in graphs]
    assert keys[0] == keys[1] != keys[2]
    assert tuning_key({"grid": [1.0]}, [], [graphs[0].to_sparse_coo()]) != keys[0]  # the layout is part of the key
    assert tuning_key({}, [], [torch.eye(3)]) != tuning_key({}, [], [torch.eye(3).to_sparse_coo()])
