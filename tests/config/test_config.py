"""Typed config: YAML + dot overrides, unknown keys and bad values are one-line errors."""

import pytest

from surf import config as config_mod
from surf.utils.errors import ConfigError


def test_defaults_and_overrides():
    cfg = config_mod.from_dict({"model": {"layers": 4}}, ["trainer.lr=1e-3", "data.pool_fractions=[0.5, 0.25, 0.25]"])
    assert cfg.model.layers == 4
    assert cfg.trainer.lr == pytest.approx(1e-3)
    assert cfg.data.pool_fractions == [0.5, 0.25, 0.25]
    assert cfg.constraints.kind == "gradient_norm"


def test_int_accepted_for_float_but_not_reverse():
    assert config_mod.from_dict({"trainer": {"lr": 1}}).trainer.lr == 1.0
    with pytest.raises(ConfigError, match="model.layers"):
        config_mod.from_dict({"model": {"layers": 2.5}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trainer": {"epochs": 5}}, "unknown key 'trainer.epochs'"),
        ({"modle": {}}, "did you mean 'model'"),
        ({"model": {"variant": "huge"}}, "model.variant='huge' is not one of"),
        ({"constraints": {"epsilon": 1.5}}, "constraints.epsilon"),
        ({"num_agents": 1}, "at least 2 agents"),
        ({"data": {"source": "npz"}}, "data.path"),
        ({"model": {"server": True, "hops": 2}}, "model.hops=1"),
        ({"eval": {"n_async": 100}}, "eval.n_async"),
        ({"trainer": {"lr": "fast"}}, "trainer.lr"),
        ({"model": {"warm_start": "heavy_ball"}}, "needs model.local_gradient=full"),
        ({"model": {"warm_start": "heavy_ball", "local_gradient": "full", "variant": "paper"}},
         "needs model.variant=compact"),
        ({"model": {"warm_start": "heavy_ball", "local_gradient": "full", "hops": 0}}, "model.hops >= 1"),
        ({"model": {"warm_start": "adam"}}, "model.warm_start='adam' is not one of"),
        ({"model": {"features": ["adam", "adam"]}}, "lists a feature twice"),
        ({"model": {"features": ["adam"], "variant": "paper"}}, "set model.variant=compact"),
        ({"model": {"dropout": 0.5}}, "act in the paper variant's step only: set model.variant=paper"),
        ({"model": {"batchnorm": True}}, "model.batchnorm=True, model.dropout=0.0 act in the paper variant's"),
        ({"model": {"momentum_init": 1.0}}, "model.momentum_init"),
        ({"model": {"safeguard": "gradient"}}, "model.safeguard='gradient' is not one of"),
        ({"model": {"safeguard": "loss", "variant": "paper"}}, "model.safeguard compares .* model.variant=compact"),
        ({"family": "sparse_coding", "model": {"safeguard": "loss"}}, "needs family=decentralized"),
        ({"family": "sparse_coding", "constraints": {"kind": "energy"}}, "measure of the decentralized classifier"),
        ({"constraints": {"energy_weight": -1}}, "energy_weight"),
        ({"constraints": {"window_reduce": "median"}}, "constraints.window_reduce"),
        ({"family": "sparse_coding", "trainer": {"select_by": "accuracy"}}, "select_by=accuracy needs"),
        ({"trainer": {"scenario": ["fig4_async", "link_loss"], "scenario_severity": 5}},
         "one severity .* per scenario"),
        ({"trainer": {"scenario": "fig4_async", "scenario_severity": [10, 0]}}, r"not a range \[lo, hi\]"),
        ({"trainer": {"scenario": ["fig4_async"], "scenario_severity": ["high"]}}, "expected a number"),
        ({"trainer": {"scenario_severity": 3}}, "needs trainer.scenario"),
        ({"trainer": {"grad_clip": -1.0}}, "trainer.grad_clip=-1.0 must be > 0"),
        ({"constraints": {"dual_max": -1.0}}, "constraints.dual_max=-1.0 must be >= 0"),
        ({"topology": {"gso": "laplacian", "laplacian_alpha": -1.0}}, "topology.laplacian_alpha=-1.0 must be > 0"),
        ({"eval": {"momentum_grid": []}}, "eval.momentum_grid must be a non-empty list"),
        ({"name": "../../etc"}, "use a plain name without slashes"),
        ({"name": ""}, "use a plain name without slashes"),
        ({"model": {"step_init": 0.0}}, "model.step_init=0.0 must be > 0"),
        ({"model": {"w0_std": -1.0}}, "model.w0_std=-1.0 must be >= 0"),
        ({"constraints": {"optimum_l2": -1.0}}, "constraints.optimum_l2=-1.0 must be > 0"),
    ],
)
def test_bad_configs_raise_one_line(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        config_mod.from_dict(raw)
    assert "\n" not in str(info.value)


def test_every_integer_key_refuses_a_value_past_64_bits():
    """A Python int past 64 bits used to overflow deep inside torch or numpy (tracebacks on num_agents, data sizes,
    model.layers, threads) or to run for ever (trainer.steps); it is a config error naming the key. 2**63 - 1
    itself is not refused for being too large to hold."""
    from tests.conftest import config_keys

    cfg = config_mod.Config()
    integers = [key for key in config_keys() if type(_get(cfg, key)) is int]
    assert {"num_agents", "threads", "model.layers", "trainer.steps", "seed"} <= set(integers)
    for key in integers:
        for value in (2**63, -(2**63) - 1):
            with pytest.raises(ConfigError, match=f"{key}={value} does not fit in 64 bits"):
                config_mod.from_dict({}, [f"{key}={value}"])
    assert config_mod.from_dict({}, [f"seed={2**63 - 1}"]).seed == 2**63 - 1


def test_threads_are_bounded_by_what_a_machine_can_start():
    """threads=100000 made torch start 100,000 OpenMP threads and hang."""
    assert config_mod.from_dict({}, [f"threads={config_mod.MAX_THREADS}"]).threads == config_mod.MAX_THREADS
    with pytest.raises(ConfigError, match=f"threads=100000 must be in \\[0, {config_mod.MAX_THREADS}\\]"):
        config_mod.from_dict({}, ["threads=100000"])


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="section.key=value"):
        config_mod.from_dict({}, ["trainer.lr"])
    with pytest.raises(ConfigError, match="seed"):
        config_mod.from_dict({}, ["seed.x=1"])


def test_load_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config_mod.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config_mod.load(bad)


def test_bundled_configs_are_valid(tmp_path):
    from pathlib import Path

    import yaml

    from surf.app.sweep import Sweep

    for path in sorted((Path(__file__).resolve().parents[2] / "simulations").glob("*.yaml")):
        if "base" in yaml.safe_load(path.read_text()):  # a sweep file: every cell's config must resolve
            assert Sweep(path, tmp_path / "out", tmp_path / "store").cells
            continue
        cfg = config_mod.load(path)
        assert cfg.name == path.stem


def test_every_override_is_a_config_or_a_config_error():
    """Fuzzed overrides on every key: a valid Config, or ConfigError with one line; nothing else escapes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from surf.app.registry import config_from_dict
    from tests.conftest import config_keys

    values = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                       st.booleans(), st.none(), st.lists(st.floats(-1, 2), max_size=3),
                       st.sampled_from([".nan", ".inf", "-1", "0", "[0.1, 0.2]", "{p: 0.1}", "[", "full", "npz"]))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(sorted(config_keys())), values), min_size=1, max_size=3))
    def check(overrides):
        items = [f"{key}={value}" if isinstance(value, str) else f"{key}={value!r}" for key, value in overrides]
        try:
            config_from_dict({}, items)
        except ConfigError as exc:
            assert "\n" not in str(exc)

    check()
