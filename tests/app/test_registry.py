"""One registry per kind, all visible: the names a config may use are checked against them in one place."""

import pytest

from surf.app.registry import (
    FAMILIES,
    RUNTIMES,
    TRAINING_ONLY,
    catalogue,
    check_evaluation_keys,
    check_names,
    config_from_dict,
)
from surf.baselines.registry import BASELINES
from surf.config import from_dict
from surf.utils.errors import ConfigError
from tests.conftest import config_keys


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


@pytest.mark.parametrize("family, key", [
    ("decentralized", "model.warm_start"), ("decentralized", "data.relabel_train"),
    ("decentralized", "constraints.dual_lr"), ("sparse_coding", "sparse_coding.loss"),
    ("sparse_coding", "constraints.epsilon"), ("inpainting", "inpainting.pretrain_steps"),
    ("inpainting", "constraints.kind"),
    ("sparse_coding", "trainer.val_tasks"), ("inpainting", "trainer.val_tasks"),  # only the classifier's baselines
])
def test_an_evaluation_refuses_what_only_meta_training_reads(family, key):
    with pytest.raises(ConfigError, match=f"-o {key}: an evaluation does not train"):
        check_evaluation_keys([key], family, "-o")


def test_an_evaluation_takes_what_it_measures():
    """The classifier's epsilon sets its constraint-satisfied share and inpainting's its own (an evaluation reads
    them); the trainer's validation tasks and device too."""
    check_evaluation_keys(["constraints.epsilon", "trainer.val_tasks", "trainer.device", "model.recompute"],
                          "decentralized", "-o")
    check_evaluation_keys(["constraints.epsilon", "inpainting.free_layers", "trainer.device"], "inpainting", "-o")
    check_evaluation_keys(["sparse_coding.val_signals", "sparse_coding.ci_measure", "trainer.device"],
                          "sparse_coding", "-o")


def test_every_training_only_key_is_a_config_key():
    """A misspelt entry would refuse nothing (or, in evaluation_reads, let nothing through)."""
    keys = set(config_keys())
    for entry in FAMILIES.values():
        for key in (*TRAINING_ONLY, *entry.trains_only, *entry.evaluation_reads):
            assert key in keys or any(k.startswith(key + ".") for k in keys), key
