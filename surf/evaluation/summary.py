"""The typed ``summary.json`` of every run directory (``surf run``, ``surf eval``, ``surf deploy``, every family) and
the ``stress.json`` / ``matrix.json`` results of ``surf stress``.

Each writer builds these dataclasses; the JSON Schema in ``docs/summary.schema.json`` is generated from them
(``python -m surf.evaluation.summary``) and every writer is validated against it in the tests. Distinct quantities
have distinct names: ``grad_norm_decrease_fraction`` (the full-local-gradient norm strictly decreased from layer
l-1 to l), ``declared_decrease_fraction`` (the quantity the run's constraint is on strictly decreased),
``constraint_satisfied_fraction`` (the run's own descent constraint held, slack <= 0),
``objective_nonincrease_fraction`` (the objective did not increase) and ``distance_nonincrease_fraction`` (the
distance to the reference did not increase: for images, the PSNR did not decrease). Summaries written before the
schema had a version (v1) are upgraded on reading by :func:`load_summary`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from surf.utils.errors import ConfigError
from surf.utils.typed import build, json_schema

SCHEMA_VERSION = 2
Number = int | float


@dataclass
class Communication:
    """Nominal communication of a method: rounds, messages and float32 bytes, in total and per round."""

    rounds: int
    messages: int
    bytes: int
    messages_per_round: int
    bytes_per_round: int


@dataclass
class Descent:
    """Shares of (task, layer) pairs where a per-layer descent held; None = not measured for this method."""

    grad_norm_decrease_fraction: float | None = None
    constraint_satisfied_fraction: float | None = None
    objective_nonincrease_fraction: float | None = None
    distance_nonincrease_fraction: float | None = None  # distance to the reference did not grow (PSNR did not fall)
    declared_quantity: str | None = None  # what the run's constraint is on (constraints.kind; unrolling: gradient_norm)
    declared_decrease_fraction: float | None = None  # that quantity strictly decreased from layer l-1 to l
    decrease_fractions: dict[str, float] = field(default_factory=dict)  # every quantity on full local data, strictly
    safeguard_fallback_fraction: float | None = None  # model.safeguard: share of active (agent, layer) steps that
    #   took the classical step instead of the learned one (None = no safeguard)


@dataclass
class Comparison:
    """Another method on the same tasks (a tuned baseline, a classical solver, a twin model)."""

    final: dict[str, float]  # metrics after the last step, e.g. accuracy, accuracy_relabelled, loss
    per_step: dict[str, list[float]]  # per round (baselines) or per iteration / layer, index 0 = the start
    steps: int  # communication rounds, iterations or layers
    hyper: dict[str, float] = field(default_factory=dict)  # the settings used (tuned or preset)
    preset: str = ""  # how the settings were chosen
    description: str = ""
    communication: Communication | None = None
    descent: Descent = field(default_factory=Descent)


@dataclass
class WarmStart:
    """The classical method a model's layers were initialized to (``model.warm_start``), tuned on validation tasks."""

    method: str  # heavy_ball
    step: float  # alpha of every layer
    momentum: float  # beta of every layer
    gradient_steps: int  # L: one per layer
    mixing_rounds: int  # K: rounds of plain S mixing per gradient step (taps h_K = 1)
    preset: str = "tuned on validation tasks"


@dataclass
class Training:
    """Meta-training that produced the model."""

    steps: int
    best_val_loss: float  # validation loss of the selected model
    duals: list[float]  # lambda_l at the last step
    select_by: str = "loss"  # trainer.select_by: the validation criterion of model selection (step 0 included)
    best_step: int | None = None  # meta-step of the selected model (0 = the untrained, e.g. warm-started, model)
    best_validation: dict[str, float] = field(default_factory=dict)  # its validation metrics (val_loss, ...)
    start_validation: dict[str, float] = field(default_factory=dict)  # the untrained model's, at step 0
    warm_start: WarmStart | None = None


@dataclass
class Robustness:
    """Final metrics of every method under one kind of perturbation, per strength."""

    strengths: list[float]
    methods: dict[str, list[dict[str, float | list[float]]]]


@dataclass
class Shift:
    """Every method's final metrics on one out-of-distribution shift."""

    shift: str
    value: float
    methods: dict[str, dict[str, float]]


@dataclass
class Runtime:
    """Where an evaluation ran: the Flower runtime's nodes, wall time and per-job accounting and drops."""

    name: str
    backend: str
    agents_per_node: int
    nodes: int
    ray_actors: int
    wall_seconds: float
    jobs: dict[str, dict[str, Any]]


@dataclass
class Summary:
    """``summary.json``: the meta-test result of one model on one family's tasks."""

    family: str  # the config's family
    kind: Literal["run", "eval", "deploy"]
    method: str  # e.g. surf | unrolling | constrained_lista
    layers: int
    rounds: int  # communication rounds of one forward pass (0: no communication)
    final: dict[str, float]  # headline metrics at the last layer
    per_layer: dict[str, list[float]]  # index 0 = the start (W_0, x_0)
    descent: Descent
    eval: dict[str, Number | str]  # what the evaluation used (tasks, drops, signals)
    per_layer_relabelled: dict[str, list[float]] = field(default_factory=dict)  # relabelled twin tasks
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # baselines, classical solvers, twins
    reference: dict[str, float] = field(default_factory=dict)  # e.g. the optimum's objective
    communication: Communication | None = None
    robustness: dict[str, Robustness] = field(default_factory=dict)
    ood: list[Shift] = field(default_factory=list)
    training: Training | None = None
    runtime: Runtime | None = None
    evaluated_from: str | None = None
    git_sha: str = "unknown"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StressMethod:
    """One method's final accuracy across a scenario's severities."""

    kind: str  # surf | unrolling | baseline
    mean: list[float]  # over (task, repetition) pairs
    std: list[float]
    std_over_repeats: list[float]  # std of the task-averaged accuracy over repetitions
    trained_on: str | None = None  # learned models: the scenario they were meta-trained under
    constraint_satisfied_fraction: list[float] | None = None  # learned models: their descent constraint held
    declared_quantity: str | None = None  # learned models: what their constraint is on
    declared_decrease_fraction: list[float] | None = None  # learned models: that quantity strictly decreased
    hyper: dict[str, float] | None = None  # baselines: tuned on clean validation tasks
    batch: int | None = None


@dataclass
class StressResult:
    """``stress.json`` entry: every method on one scenario, per severity."""

    scenario: str
    description: str
    severity_name: str
    severities: list[int | float | str]
    repeats: int
    test_tasks: int
    async_mode: str
    rounds: int
    methods: dict[str, StressMethod]
    seconds: float
    schema_version: int = SCHEMA_VERSION


@dataclass
class MatrixCell:
    severity: int | float | str
    mean: float
    std: float
    constraint_satisfied_fraction: float | None = None


@dataclass
class MatrixRow:
    trained_on: str
    kind: str
    cells: dict[str, MatrixCell]


@dataclass
class StressMatrix:
    """``matrix.json``: train scenario x test scenario."""

    test_scenarios: list[str]
    repeats: int
    test_tasks: int
    rows: dict[str, MatrixRow]
    schema_version: int = SCHEMA_VERSION


SCHEMAS = {"summary": Summary, "stress": StressResult, "matrix": StressMatrix}


def load_summary(path: Path) -> Summary:
    """A ``summary.json`` (any version) as a :class:`Summary`; a missing or malformed file is a one-line error."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable summary.json ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a summary (expected a JSON object)")
    try:
        return build(Summary, upgrade(raw))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A summary mapping of any schema version in the current version's layout."""
    version = raw.get("schema_version", 1)
    if version == SCHEMA_VERSION:
        return raw
    if version != 1:
        raise ConfigError(f"summary schema version {version} is newer than this SURF ({SCHEMA_VERSION}); upgrade SURF")
    return _v1_sparse(raw) if raw.get("family") == "sparse_coding" else _v1_classifier(raw)


def _v1_classifier(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 classifier / deploy summary: flat baselines and one ambiguous ``descent_fraction``."""
    def comparison(entry: dict) -> dict:
        final = {k: entry[k] for k in ("accuracy", "accuracy_relabelled", "loss", "relative_accuracy") if k in entry}
        hyper = entry.get("hyper") or {"step": entry["step_size"], **({"momentum": entry["momentum"]}
                                                                       if "momentum" in entry else {})}
        return {"final": final, "per_step": {"accuracy": entry["per_round_accuracy"],
                                             "loss": entry["per_round_loss"]},
                "steps": entry["rounds"], "hyper": hyper, "preset": entry.get("preset", ""),
                "description": entry.get("description", ""), "communication": entry.get("communication")}

    training = raw.get("training")
    kind = "eval" if raw.get("evaluated_from") else "deploy" if raw.get("runtime") else "run"
    return {
        "family": "decentralized", "kind": kind, "method": raw["method"],
        "layers": len(raw["per_layer"]["accuracy"]) - 1, "rounds": raw["rounds"], "final": raw["final"],
        "per_layer": raw["per_layer"], "per_layer_relabelled": raw.get("per_layer_relabelled", {}),
        "descent": {"grad_norm_decrease_fraction": raw["descent_fraction"]}, "eval": raw["eval"],
        "comparisons": {name: comparison(entry) for name, entry in raw.get("baselines", {}).items()},
        "communication": raw.get("communication"),
        "training": None if training is None else {"steps": training["steps"],
                                                   "best_val_loss": training["best_val_loss"],
                                                   "duals": training["lambda"]},
        "runtime": raw.get("runtime"), "evaluated_from": raw.get("evaluated_from"),
        "git_sha": raw.get("git_sha", "unknown"),
    }


def _v1_sparse(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 sparse-coding summary: every method's curves side by side under ``per_layer``."""
    def rename(metrics: dict) -> dict:
        return {("objective_nonincrease_fraction" if k == "objective_descent_fraction" else k): v
                for k, v in metrics.items()}

    method, layers = raw["method"], raw["layers"]
    curves = {name: {k: v for k, v in rep.items() if k != "objective_descent_fraction"}
              for name, rep in raw["per_layer"].items()}
    descents = {name: rep["objective_descent_fraction"] for name, rep in raw["per_layer"].items()}
    return {
        "family": "sparse_coding", "kind": "eval" if raw.get("evaluated_from") else "run", "method": method,
        "layers": layers, "rounds": 0, "final": raw["final"][method], "per_layer": curves[method],
        "descent": {"objective_nonincrease_fraction": descents[method]}, "eval": raw["eval"],
        "comparisons": {name: {"final": raw["final"][name], "per_step": curves[name], "steps": layers,
                               "descent": {"objective_nonincrease_fraction": descents[name]}}
                        for name in curves if name != method},
        "reference": {"optimum_objective": raw["optimum_objective"]},
        "robustness": {kind: {"strengths": rob["strengths"],
                              "methods": {n: [rename(p) for p in pts] for n, pts in rob["methods"].items()}}
                       for kind, rob in raw.get("robustness", {}).items()},
        "ood": [{**row, "methods": {n: rename(m) for n, m in row["methods"].items()}} for row in raw.get("ood", [])],
        "training": None if raw.get("training") is None else {
            "steps": raw["training"]["steps"], "best_val_loss": raw["training"]["best_val_loss"],
            "duals": raw["training"]["lambda"]},
        "evaluated_from": raw.get("evaluated_from"), "git_sha": raw.get("git_sha", "unknown"),
    }


def write_schemas(folder: Path) -> list[Path]:
    """``<name>.schema.json`` for every document type, into ``folder``."""
    paths = []
    for name, cls in SCHEMAS.items():
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(cls), indent=2) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m surf.evaluation.summary [FOLDER]: regenerate the published schemas
    for written in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(written)
