"""Named, seeded stress scenarios (``simulations/scenarios/*.yaml``) compiled to network schedules.

A scenario composes perturbations (``surf.scenarios.perturbations.KINDS``) and config overrides (distribution
shift at test time: another graph, N, partition, data source). One number, the *severity*, drives it: any
perturbation parameter written as ``severity`` and any ``{severity}`` in an override take its value. Example::

    description: Bernoulli dropout, every agent misses each step with probability p
    severity_name: p
    severities: [0.0, 0.05, 0.1, 0.2, 0.3]
    severity: 0.1            # the representative value (robust training, train x test matrix)
    async_mode: stale        # what neighbours of a silent agent receive: stale | zero
    perturbations:
      - {kind: bernoulli, p: severity}

For one task and one repetition a scenario compiles to a :class:`ScenarioSchedule` whose conditions at step t are
the same for every method: an unrolled model reads step t at layer t; a baseline with K rounds per layer reads step
``ceil(r / K)`` at round r (the same agents are silent during the same communication window) and its message delays
are counted in rounds (``K x`` the steps)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from surf.config import Config, from_dict, read_mapping, to_dict
from surf.graphs.network import Schedule, StepConditions
from surf.scenarios.perturbations import KINDS, AsyncAgents, Context, Perturbation
from surf.utils.errors import ConfigError
from surf.utils.paths import REPO
from surf.utils.typed import coerce_value

SCENARIO_DIR = REPO / "simulations" / "scenarios"
_KEYS = ("description", "severity_name", "severities", "severity", "async_mode", "perturbations", "overrides")
SEVERITY = "severity"


@dataclass(frozen=True)
class Scenario:
    """A scenario spec as written in its YAML file (perturbation parameters may still read ``severity``)."""

    name: str
    description: str = ""
    severity_name: str = SEVERITY
    severities: tuple = (0,)
    severity: Any = None  # representative value; None = the largest of ``severities``
    async_mode: str = "stale"
    perturbations: tuple[dict, ...] = ()
    overrides: tuple[str, ...] = ()

    @property
    def representative(self) -> Any:
        return self.severity if self.severity is not None else self.severities[-1]

    @property
    def uses_severity(self) -> bool:
        """Whether a perturbation parameter or an override reads the severity (``clean``, ``relabelled`` and
        ``one_peer_exponential`` do not: a severity given to them would change nothing)."""
        return any(_reads_severity(raw) for raw in self.perturbations) or \
            any("{" + SEVERITY + "}" in item for item in self.overrides)

    def check_severity_given(self, where: str) -> None:
        """A one-line error when ``where`` gives this scenario a severity it never reads."""
        if not self.uses_severity:
            raise ConfigError(f"{where}: scenario '{self.name}' has no severity (severity_name: {self.severity_name}), "
                              "so it would change nothing; drop it")

    def bind(self, severity: Any) -> BoundScenario:
        """The scenario at one severity: perturbation objects built and checked, overrides filled in."""
        perturbations = tuple(_perturbation(self.name, i, raw, severity) for i, raw in enumerate(self.perturbations))
        overrides = tuple(item.replace("{severity}", str(severity)) for item in self.overrides)
        return BoundScenario(self, severity, perturbations, overrides)


@dataclass(frozen=True)
class BoundScenario:
    scenario: Scenario
    severity: Any
    perturbations: tuple[Perturbation, ...]
    overrides: tuple[str, ...]

    @property
    def async_mode(self) -> str:
        return self.scenario.async_mode

    @property
    def random(self) -> bool:
        """Whether repetitions can differ (some random perturbation is active)."""
        return any(p.random and not p.noop for p in self.perturbations)

    @property
    def network(self) -> bool:
        """Whether it changes the network (agents, links, graphs, delays) at all."""
        hooks = ("active", "shift", "delays")
        return any(not p.noop and any(_overrides(p, h) for h in hooks) for p in self.perturbations)

    def check(self, num_agents: int) -> None:
        """A one-line error naming the scenario and severity when it cannot apply to ``num_agents`` agents."""
        self._each(lambda p: p.check(num_agents))

    def check_steps(self, steps: int) -> None:
        """A one-line error (naming its fix) when a perturbation would never act within ``steps`` steps."""
        self._each(lambda p: p.check_steps(steps))

    def _each(self, check: Callable[[Perturbation], None]) -> None:
        try:
            for p in self.perturbations:
                check(p)
        except ConfigError as exc:
            raise ConfigError(f"scenario '{self.scenario.name}' at severity {self.severity}: {exc}") from None

    def contexts(self, ctx: Context) -> list[Context]:
        return [dataclasses.replace(ctx, stream=(p.kind, i)) for i, p in enumerate(self.perturbations)]

    def task(self, ctx: Context, task: Any) -> Any:
        """The task as this scenario shows it (feature noise, relabelled classes; unchanged otherwise)."""
        for p, c in zip(self.perturbations, self.contexts(ctx), strict=True):
            if not p.noop:
                task = p.task(c, task)
        return task

    def schedule(self, ctx: Context, shift: torch.Tensor) -> ScenarioSchedule | None:
        """The per-step network of one task and repetition; None when the scenario leaves the network alone."""
        return ScenarioSchedule(self, ctx, shift) if self.network else None

    def config(self, cfg: Config) -> Config:
        """``cfg`` with the scenario's overrides applied (the same object when there are none)."""
        return from_dict(to_dict(cfg), list(self.overrides)) if self.overrides else cfg


def _overrides(p: Perturbation, hook: str) -> bool:
    return getattr(type(p), hook) is not getattr(Perturbation, hook)


class ScenarioSchedule:
    """Conditions per step for one (task, repetition), memoized; ``per_round(K)`` for K-round-per-layer baselines."""

    def __init__(self, bound: BoundScenario, ctx: Context, shift: torch.Tensor) -> None:
        self.parts = [(p, c) for p, c in zip(bound.perturbations, bound.contexts(ctx), strict=True) if not p.noop]
        self.base, self.num_agents = shift, ctx.num_agents
        self.memo: dict[int, StepConditions] = {}
        self.state: list[dict] = [{} for _ in self.parts]
        self.drops = any(_overrides(p, "active") for p, _ in self.parts)
        delays = [d for p, c in self.parts if (d := p.delays(c)) is not None]
        self.delay = torch.stack(delays).max(0).values if delays else None

    def __call__(self, step: int) -> StepConditions:
        if step not in self.memo:
            self.memo[step] = self._conditions(step)
        return self.memo[step]

    def _conditions(self, step: int) -> StepConditions:
        active, shift = None, self.base
        for (p, c), state in zip(self.parts, self.state, strict=True):
            mask = p.active(c, step, state)
            if mask is not None:
                active = mask if active is None else active & mask
            shift = p.shift(c, step, shift)
        if self.drops and active is None:  # keep stale buffers current on steps without drops
            active = torch.ones(self.num_agents, dtype=torch.bool)
        return StepConditions(active=active, shift=None if shift is self.base else shift, delay=self.delay)

    def per_round(self, rounds_per_step: int) -> Schedule:
        """Round r of a baseline reads step ceil(r / K); delays in rounds."""
        k = max(int(rounds_per_step), 1)

        def at_round(r: int) -> StepConditions:
            conditions = self(math.ceil(r / k))
            delay = conditions.delay * k if conditions.delay is not None else None
            return dataclasses.replace(conditions, delay=delay)

        return at_round


def _perturbation(scenario: str, index: int, raw: Any, severity: Any) -> Perturbation:
    """Build perturbation ``index`` from its mapping, ``severity`` placeholders replaced; unknown keys are errors."""
    where = f"scenario '{scenario}', perturbations[{index}]"
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ConfigError(f"{where}: expected a mapping with a 'kind' (one of {', '.join(KINDS)})")
    cls = KINDS.get(raw["kind"])
    if cls is None:
        close = difflib.get_close_matches(str(raw["kind"]), list(KINDS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(KINDS)}"
        raise ConfigError(f"{where}: unknown kind {raw['kind']!r} ({hint})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in names:
            raise ConfigError(f"{where}: {cls.kind} has no parameter '{key}' (valid: {', '.join(names) or 'none'})")
        value = _bind_value(value, severity)
        if hints[key] is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        kwargs[key] = coerce_value(value, hints[key], f"{where}.{key}")
        if isinstance(kwargs[key], float) and not math.isfinite(kwargs[key]):  # std=inf reported chance accuracy
            raise ConfigError(f"{where}.{key}={kwargs[key]} must be a finite number")
    return cls(**kwargs)


def _reads_severity(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_reads_severity(v) for v in value.values())
    return value == SEVERITY


def _bind_value(value: Any, severity: Any) -> Any:
    """``severity`` (also inside a mapping such as a graph family's params) -> the severity value."""
    if isinstance(value, dict):
        return {k: _bind_value(v, severity) for k, v in value.items()}
    return severity if value == SEVERITY else value


def scenario_paths() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SCENARIO_DIR.glob("*.yaml"))}


def list_scenarios() -> dict[str, str]:
    """Bundled scenario names -> one-line description."""
    return {name: (load_scenario(name).description.splitlines() or [""])[0] for name in scenario_paths()}


def load_scenario(name: str) -> Scenario:
    """A bundled scenario by name, or a YAML file by path; every severity is bound once to surface bad values."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else scenario_paths().get(name)
    if path is None or not path.is_file():
        close = difflib.get_close_matches(name, list(scenario_paths()), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown scenario '{name}' (see `surf list`{hint})")
    raw = read_mapping(path, f"a mapping with keys {', '.join(_KEYS)}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (valid: {', '.join(_KEYS)})")
    scenario = scenario_from_dict(path.stem, raw)
    for severity in (*scenario.severities, scenario.representative):
        scenario.bind(severity)
    return scenario


def scenario_from_dict(name: str, raw: dict) -> Scenario:
    """A Scenario from its YAML mapping (types checked)."""
    severities = raw.get("severities", [raw.get("severity", 0)])
    if not isinstance(severities, list) or not severities:
        raise ConfigError(f"scenario '{name}': severities must be a non-empty list")
    mode = raw.get("async_mode", "stale")
    if mode not in ("stale", "zero"):
        raise ConfigError(f"scenario '{name}': async_mode={mode!r} must be stale or zero")
    perturbations = raw.get("perturbations") or []
    overrides = raw.get("overrides") or []
    if not isinstance(perturbations, list) or not isinstance(overrides, list):
        raise ConfigError(f"scenario '{name}': perturbations and overrides must be lists")
    return Scenario(
        name=name, description=str(raw.get("description", "")), severity_name=str(raw.get("severity_name", SEVERITY)),
        severities=tuple(severities), severity=raw.get("severity"), async_mode=mode,
        perturbations=tuple(perturbations), overrides=tuple(str(o) for o in overrides),
    )


def parse_severity(text: str) -> Any:
    """A command-line severity: a YAML scalar (``3``, ``0.1``, ``ring``)."""
    value = yaml.safe_load(text)
    if isinstance(value, dict | list) or value is None:
        raise ConfigError(f"--severity {text!r}: expected a number or a name")
    return value


def dropped_agents_scenario(n_async: int, async_mode: str) -> BoundScenario:
    """``n_async`` agents dropped per step (``eval.n_async``): the ``fig4_async`` scenario at severity ``n_async``, so
    ``surf eval -o eval.n_async=n`` and repetition 0 of ``surf stress --scenario fig4_async --severity n`` agree."""
    scenario = Scenario(name=f"dropped:{n_async}", severity_name="n_async", severities=(n_async,),
                        async_mode=async_mode, perturbations=({"kind": AsyncAgents.kind, "n": SEVERITY},))
    return scenario.bind(n_async)
