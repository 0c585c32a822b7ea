"""One registry per kind, all visible: the names a config may use are checked against them in one place."""

import pytest

from surf.app.registry import FAMILIES, RUNTIMES, catalogue, check_names, config_from_dict
from surf.baselines.registry import BASELINES
from surf.config import from_dict
from surf.utils.errors import ConfigError


@pytest.mark.parametrize("override, message", [
    ("family=lasso", "family='lasso' is not one of decentralized, sparse_coding"),
    ("topology.gso=laplace", "topology.gso='laplace' is not one of"),
    ("data.source=cifar", "data.source='cifar' is not one of digits, gaussian, npz"),
    ("data.partition=shards", "data.partition='shards' is not one of"),
    ("trainer.scenario=stormy", "unknown scenario 'stormy'"),
    ("trainer.scenario=[fig4_async,stormy]", "unknown scenario 'stormy'"),
    ("model.features=[momentum]", "model.features: unknown feature 'momentum' (valid: tracking"),
])
def test_registry_names_are_checked(override, message):
    cfg = from_dict({}, [override])  # structurally valid: the config layer knows no registry
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_names(cfg)
    with pytest.raises(ConfigError):
        config_from_dict({}, [override])


def test_catalogue_lists_every_registry_with_baseline_kinds_and_hypers():
    listing = catalogue()
    assert set(listing["task families (family)"]) == set(FAMILIES)
    assert set(listing["runtimes"]) == set(RUNTIMES)
    baselines = listing["baselines (eval.baselines, eval.long_baselines, surf stress --baselines)"]
    assert set(baselines) == set(BASELINES)
    assert baselines["fedavg"].startswith("[star") and "tunes step, momentum" in baselines["dgd_momentum"]
    assert "row_normalized" in listing["graph shift operators (topology.gso)"]
