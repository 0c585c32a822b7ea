"""Typed experiment configuration: the schema (dataclasses with the paper's defaults), loading YAML with dot-path
overrides, and cross-field validation. It imports no registry: names that live in a registry are checked by the
application layer (``surf.app.registry``), so this package sits just above ``surf.utils``."""

from surf.config.load import (
    EXECUTION_ONLY,
    SWEEP_ONLY,
    from_dict,
    identity,
    load,
    parse_overrides,
    read_mapping,
    to_dict,
    upgraded,
)
from surf.config.schema import (
    Config,
    ConstraintConfig,
    DataConfig,
    EvalConfig,
    InpaintingConfig,
    ModelConfig,
    SparseCodingConfig,
    TopologyConfig,
    TrainerConfig,
)
from surf.config.validate import MAX_THREADS, validate

__all__ = ["EXECUTION_ONLY", "MAX_THREADS", "SWEEP_ONLY", "Config", "ConstraintConfig", "DataConfig", "EvalConfig",
           "InpaintingConfig", "ModelConfig", "SparseCodingConfig", "TopologyConfig", "TrainerConfig", "from_dict",
           "identity", "load", "parse_overrides", "read_mapping", "to_dict", "upgraded", "validate"]
