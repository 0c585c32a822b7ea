"""Typed experiment configuration: dataclasses, YAML files and dot-path overrides (``-o trainer.lr=1e-3``).

Unknown keys and values of the wrong type are errors (``ConfigError``, one line naming the fix). Defaults follow the
SURF paper (Hadou et al.) where it states a value; deviations are commented.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from surf.errors import ConfigError


@dataclass
class TopologyConfig:
    """Communication graph: a catalogue family or named spec, its parameters and the graph shift operator."""

    name: str = "regular3_paper"  # family (see `surf list`) or a spec file in topologies/ (without .yaml)
    params: dict[str, Any] = field(default_factory=dict)  # family parameters, e.g. {p: 0.1} for erdos_renyi
    gso: str = "row_normalized"  # row_normalized | lambda_max | metropolis | max_degree | laplacian
    laplacian_alpha: float | None = None  # step of I - alpha*L; None = 1/lambda_max(L)
    resample_per_task: bool = False  # a new random graph per task (the paper does this)
    allow_disconnected: bool = False


@dataclass
class DataConfig:
    """Task distribution: where samples come from and how each task splits them across agents."""

    source: str = "digits"  # digits | gaussian | npz
    path: str | None = None  # .npz file for source=npz
    partition: str = "imbalanced"  # imbalanced (paper) | dirichlet | iid | pathological
    dirichlet_alpha: float = 0.7
    classes_per_agent: int = 2  # for pathological
    train_per_agent: int = 45
    test_per_agent: int = 15
    batch_size: int = 10  # mini-batch per agent per layer
    relabel_train: bool = False  # meta-train on relabelled tasks (random class permutation per task)
    pool_fractions: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # meta-train/val/test pools
    heldout_fraction: float = 0.25  # per task: share of its pool kept for held-out samples only
    standardize: bool = False  # z-score features with meta-train pool statistics (npz features)
    gaussian_dim: int = 64
    gaussian_classes: int = 10
    gaussian_samples: int = 6000
    gaussian_separation: float = 3.0


@dataclass
class ModelConfig:
    """U-DGD unrolled network (paper eq. 11-12)."""

    variant: str = "compact"  # compact | paper
    layers: int = 10  # L
    hops: int = 2  # K communication rounds per layer (taps k = 0..K)
    w0_std: float = 5.0  # W_0 ~ N(0, std^2); paper code uses 5
    server: bool = False  # star/FL mode, paper eq. 13: node 0 is a data-less server
    # compact variant
    local_gradient: str = "batch"  # batch (fresh mini-batch B_l, paper) | full (agent's whole training set)
    hidden: int = 16  # width of the coordinate-wise MLP
    step_init: float = 0.3  # initial learned step alpha_l (untrained model = DGD with this step)
    recompute: bool = False  # recompute each layer's MLP in the backward pass (memory for ~10,000 agents)
    # paper variant
    batchnorm: bool = False  # authors' code: parameter-free BatchNorm across agents
    dropout: float = 0.0  # authors' code: 0.5


@dataclass
class ConstraintConfig:
    """Layer-wise descent constraints (paper eq. 3-5)."""

    kind: str = "gradient_norm"  # gradient_norm (CI, SURF) | distance (CII) | none (standard unrolling)
    form: str = "difference"  # difference (paper) | ratio (authors' code) | normalized
    epsilon: float = 0.01
    gradient_on: str = "batch"  # batch (paper: B_l) | next_batch (authors' code) | full (all local training data)
    dual_lr: float = 0.01
    dual_max: float | None = None  # optional cap on lambda
    optimum_l2: float = 1e-3  # L2 weight of the pooled problem whose optimum CII measures distance to


@dataclass
class TrainerConfig:
    """Primal-dual meta-training (paper Algorithm 1)."""

    steps: int = 500  # meta-steps (one primal Adam step + one dual step each)
    tasks_per_step: int = 1
    lr: float = 0.01
    grad_clip: float | None = None  # max norm of the meta-gradient
    val_every: int = 50
    val_tasks: int = 16
    checkpoint_every: int = 50


@dataclass
class EvalConfig:
    """Meta-test evaluation and the tuned baselines (``surf.baselines``; docs/baselines.md)."""

    test_tasks: int = 30
    n_async: int = 0  # agents per layer that neither update nor send
    async_mode: str = "stale"  # stale (paper text) | zero (authors' code)
    async_repeats: int = 1
    dgd_steps: list[float] = field(default_factory=lambda: [0.03, 0.1, 0.3, 1.0, 3.0, 10.0])  # dgd/dsgd step grid
    momentum_grid: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9])  # dgd_momentum's momenta
    long_factor: int = 10  # also report the long_baselines at long_factor x the unrolled rounds
    baselines: list[str] = field(default_factory=lambda: ["dgd", "dgd_momentum"])  # at the unrolled model's rounds
    long_baselines: list[str] = field(default_factory=lambda: ["dgd"])  # reported as NAME_x{long_factor}
    grids: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # e.g. {extra: {step: [0.1, 0.3]}}
    baseline_preset: str = "tuned"  # tuned (grid search on validation tasks) | paper (SURF paper's settings)
    local_steps: int = 6  # DFedAvgM / FedAvg / FedProx / SCAFFOLD local steps per round (paper DFedAvgM: 6)
    clients_per_round: int = 10  # FedAvg / FedProx / SCAFFOLD participants per round (paper: 10 of 100)
    centralized_rounds: int = 500  # gradient steps of the centralized ceiling (when "centralized" is listed)


@dataclass
class Config:
    name: str = "surf"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op CPU threads; 0 = torch's default (all cores). Small problems run faster on 1
    num_agents: int = 100
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "topology.gso": ("row_normalized", "lambda_max", "metropolis", "max_degree", "laplacian"),
    "data.source": ("digits", "gaussian", "npz"),
    "data.partition": ("imbalanced", "dirichlet", "iid", "pathological"),
    "model.variant": ("compact", "paper"),
    "model.local_gradient": ("batch", "full"),
    "constraints.kind": ("gradient_norm", "distance", "none"),
    "constraints.form": ("difference", "ratio", "normalized"),
    "constraints.gradient_on": ("batch", "next_batch", "full"),
    "eval.async_mode": ("stale", "zero"),
    "eval.baseline_preset": ("tuned", "paper"),
}


def coerce_value(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (ints accepted for floats); raise ConfigError otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {hint}, got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [coerce_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: expected one of {typing.get_args(hint)}, got {value!r}")
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursing into nested dataclasses."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{where}'{hint}")
        hint_type = hints[key]
        if dataclasses.is_dataclass(hint_type):
            kwargs[key] = _build(hint_type, value or {}, f"{where}.")
        else:
            kwargs[key] = coerce_value(value, hint_type, where)
    return cls(**kwargs)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.path=value`` strings; values are YAML scalars/lists (``1e-3``, ``true``, ``[1, 2]``)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': value is not valid YAML ({exc.problem})") from None
        parsed.append((key.strip(), value))
    return parsed


def validate(cfg: Config) -> Config:
    """Cross-field checks; every message says how to fix the value."""
    for dotted, allowed in CHOICES.items():
        value = get_dotted(cfg, dotted)
        if value not in allowed:
            raise ConfigError(f"{dotted}={value!r} is not one of {', '.join(allowed)}")
    positive = {
        "num_agents": cfg.num_agents,
        "data.train_per_agent": cfg.data.train_per_agent,
        "data.test_per_agent": cfg.data.test_per_agent,
        "data.batch_size": cfg.data.batch_size,
        "model.layers": cfg.model.layers,
        "model.hidden": cfg.model.hidden,
        "trainer.tasks_per_step": cfg.trainer.tasks_per_step,
        "trainer.val_every": cfg.trainer.val_every,
        "trainer.val_tasks": cfg.trainer.val_tasks,
        "trainer.checkpoint_every": cfg.trainer.checkpoint_every,
        "eval.test_tasks": cfg.eval.test_tasks,
        "eval.async_repeats": cfg.eval.async_repeats,
        "eval.long_factor": cfg.eval.long_factor,
        "eval.local_steps": cfg.eval.local_steps,
        "eval.clients_per_round": cfg.eval.clients_per_round,
        "eval.centralized_rounds": cfg.eval.centralized_rounds,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1")
    if cfg.num_agents < 2:
        raise ConfigError(f"num_agents={cfg.num_agents}: a decentralized problem needs at least 2 agents")
    if cfg.threads < 0:
        raise ConfigError(f"threads={cfg.threads} must be >= 0 (0 = all cores)")
    if cfg.model.hops < 0:
        raise ConfigError(f"model.hops={cfg.model.hops} must be >= 0")
    if cfg.trainer.steps < 0:
        raise ConfigError(f"trainer.steps={cfg.trainer.steps} must be >= 0")
    if not 0 <= cfg.eval.n_async < cfg.num_agents:
        raise ConfigError(f"eval.n_async={cfg.eval.n_async} must be in [0, num_agents={cfg.num_agents})")
    if not 0.0 <= cfg.constraints.epsilon < 1.0:
        raise ConfigError(f"constraints.epsilon={cfg.constraints.epsilon} must be in [0, 1)")
    if cfg.constraints.dual_lr < 0:
        raise ConfigError(f"constraints.dual_lr={cfg.constraints.dual_lr} must be >= 0")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")
    if cfg.trainer.lr <= 0:
        raise ConfigError(f"trainer.lr={cfg.trainer.lr} must be > 0")
    fractions = cfg.data.pool_fractions
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"data.pool_fractions={fractions} must be 3 positive numbers summing to 1")
    if not 0.0 < cfg.data.heldout_fraction < 1.0:
        raise ConfigError(f"data.heldout_fraction={cfg.data.heldout_fraction} must be in (0, 1)")
    if cfg.data.source == "npz" and not cfg.data.path:
        raise ConfigError("data.source=npz needs data.path=FILE.npz (features + labels arrays)")
    if cfg.data.partition == "dirichlet" and cfg.data.dirichlet_alpha <= 0:
        raise ConfigError(f"data.dirichlet_alpha={cfg.data.dirichlet_alpha} must be > 0")
    if cfg.model.server and cfg.model.hops != 1:
        raise ConfigError("model.server=true (star mode, paper eq. 13) needs model.hops=1")
    if not cfg.eval.dgd_steps or min(cfg.eval.dgd_steps) <= 0:
        raise ConfigError("eval.dgd_steps must be a non-empty list of positive step sizes")
    if any(not 0.0 <= b < 1.0 for b in cfg.eval.momentum_grid):
        raise ConfigError("eval.momentum_grid values must be in [0, 1)")
    _validate_baselines(cfg)
    return cfg


def _validate_baselines(cfg: Config) -> None:
    """Known method names, grids of known hyper-parameters, star-only methods in star mode."""
    from surf.baselines import BASELINES  # the registry imports torch-side modules that import this one

    valid = ", ".join(BASELINES)
    for key in ("baselines", "long_baselines", "grids"):
        for name in getattr(cfg.eval, key):
            if name not in BASELINES:
                raise ConfigError(f"eval.{key}: unknown baseline '{name}' (valid: {valid})")
    for name, grid in cfg.eval.grids.items():
        hypers = BASELINES[name].hypers
        if not isinstance(grid, dict):
            raise ConfigError(f"eval.grids.{name} must map hyper-parameters ({', '.join(hypers)}) to value lists")
        for hyper, values in grid.items():
            where = f"eval.grids.{name}.{hyper}"
            if hyper not in hypers:
                raise ConfigError(f"{where}: '{name}' has no hyper-parameter '{hyper}' (valid: {', '.join(hypers)})")
            values = coerce_value(values, list[float], where)
            if not values or (hyper == "step" and min(values) <= 0) or min(values) < 0:
                raise ConfigError(f"{where} must be a non-empty list of values >= 0 (steps > 0)")
            grid[hyper] = values
    star = [n for n in {*cfg.eval.baselines, *cfg.eval.long_baselines} if BASELINES[n].star]
    if star and not cfg.model.server:
        raise ConfigError(f"eval.baselines {sorted(star)} are server-client methods: they need topology.name=star "
                          "and model.server=true")


def get_dotted(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Build and validate a Config from a mapping plus ``key=value`` overrides."""
    raw = _deepcopy_plain(raw or {})
    for key, value in parse_overrides(overrides or []):
        _set_dotted(raw, key, value)
    return validate(_build(Config, raw, ""))


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file; missing file or bad YAML is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found (see `surf list` for the bundled configs)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    raw.setdefault("name", path.stem)
    return from_dict(raw, overrides)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _deepcopy_plain(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _deepcopy_plain(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deepcopy_plain(v) for v in raw]
    return raw
