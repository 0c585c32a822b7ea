"""The baseline registry: every classical method SURF is compared with, run on the same tasks, graphs, W_0 and
mini-batch streams, vectorized over agents and over a grid of hyper-parameter settings.

``run_baseline(name, task, shift, w0, rounds, grid, ...)`` returns :class:`Curves` (held-out accuracy and loss per
round, shape (G, rounds + 1)); ``BASELINES[name]`` holds the method's hyper-parameter names, default tuning grid,
the SURF paper's setting where it states one (a labelled preset, never the default), whether it needs the star
graph, and what it sends per round (``communication``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from surf.baselines.centralized import Centralized
from surf.baselines.common import Curves, Problem, RoundMethod, require_star, run_rounds
from surf.baselines.dfedavgm import DFedAvgM
from surf.baselines.dgd import DGD
from surf.baselines.extra import EXTRA
from surf.baselines.fedavg import FedAvg, Scaffold
from surf.baselines.tracking import DIGing
from surf.config import EvalConfig
from surf.data.tasks import Task
from surf.graphs.comm import CommCost, gossip_cost, server_cost
from surf.graphs.network import Schedule
from surf.utils.errors import ConfigError
from surf.utils.typed import coerce_value


@dataclass(frozen=True)
class Settings:
    """Fixed (not tuned) settings of the local-step and server-client methods."""

    local_steps: int = 6  # DFedAvgM / FedAvg / FedProx / SCAFFOLD local steps per round (paper DFedAvgM: 6)
    clients_per_round: int = 10  # server-client participants per round (paper: 10 of 100)


Grid = dict[str, torch.Tensor]  # hyper-parameter name -> (G,) values; column g is one setting
Build = Callable[[Problem, Grid, Settings], RoundMethod]


@dataclass(frozen=True)
class BaselineSpec:
    """One method: how to build it, what it tunes, what it sends."""

    build: Build
    description: str
    grid: dict[str, tuple[float, ...]]  # default tuning grid (per-agent steps on the mean cross-entropy)
    stochastic: bool = False  # mini-batch gradients (batch = data.batch_size, SURF's streams)
    star: bool = False  # server-client: needs the star graph with the server at node 0
    vectors: int = 1  # vectors per message
    local_steps: bool = False  # takes eval.local_steps local steps per round
    communicates: bool = True
    paper: dict[str, float] = field(default_factory=dict)  # the SURF paper's setting (may set "batch"); {} = none
    paper_note: str = ""

    @property
    def hypers(self) -> tuple[str, ...]:
        return tuple(self.grid)


STEPS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
LOCAL_STEPS = (0.01, 0.03, 0.1, 0.3, 1.0)

BASELINES: dict[str, BaselineSpec] = {
    "dgd": BaselineSpec(
        lambda p, g, s: DGD(p, g["step"], torch.zeros_like(g["step"])),
        "DGD, full local gradient (eq. 10)", {"step": STEPS},
        paper={"step": 10.0},
        paper_note="paper code: step 1000 on a loss scaled by 1/(N m) = 10 per agent; it used one fixed sample"),
    "dgd_momentum": BaselineSpec(
        lambda p, g, s: DGD(p, g["step"], g["momentum"]),
        "heavy-ball DGD, full local gradient", {"step": STEPS, "momentum": (0.5, 0.7, 0.8, 0.9)},
        paper_note="not in the paper: tuned"),
    "dsgd": BaselineSpec(
        lambda p, g, s: DGD(p, g["step"], torch.zeros_like(g["step"])),
        "DSGD, mini-batch gradient (SURF's batch streams)", {"step": STEPS}, stochastic=True,
        paper={"step": 100.0, "batch": 1},
        paper_note="paper code: step 10^4 / (N m) = 100 per agent on 1 sample (one fixed index in the code)"),
    "dfedavgm": BaselineSpec(
        lambda p, g, s: DFedAvgM(p, g["step"], g["momentum"], s.local_steps),
        "DFedAvgM: local heavy-ball SGD steps, then one gossip round",
        {"step": LOCAL_STEPS, "momentum": (0.0, 0.5, 0.9)}, stochastic=True, local_steps=True,
        paper={"step": 0.1, "momentum": 0.0},
        paper_note="paper code: first local step 0.1 per agent, then 0.001; its momentum was identically 0"),
    "diging": BaselineSpec(
        lambda p, g, s: DIGing(p, g["step"]),
        "gradient tracking (DIGing), Metropolis W", {"step": (0.03, 0.1, 0.3, 1.0, 3.0)}, vectors=2,
        paper_note="not in the paper: tuned"),
    "extra": BaselineSpec(
        lambda p, g, s: EXTRA(p, g["step"]),
        "EXTRA, Metropolis W", {"step": (0.03, 0.1, 0.3, 1.0, 3.0)},
        paper_note="not in the paper: tuned"),
    "fedavg": BaselineSpec(
        lambda p, g, s: FedAvg(p, g["step"], s.local_steps, s.clients_per_round),
        "FedAvg (star): participants' local SGD, server averages", {"step": LOCAL_STEPS}, stochastic=True,
        star=True, local_steps=True, paper_note="paper states no step size: tuned"),
    "fedprox": BaselineSpec(
        lambda p, g, s: FedAvg(p, g["step"], s.local_steps, s.clients_per_round, prox=g["prox"]),
        "FedProx (star): FedAvg with a proximal term", {"step": LOCAL_STEPS, "prox": (0.01, 0.1, 1.0)},
        stochastic=True, star=True, local_steps=True, paper_note="paper states no step size: tuned"),
    "scaffold": BaselineSpec(
        lambda p, g, s: Scaffold(p, g["step"], s.local_steps, s.clients_per_round),
        "SCAFFOLD (star): control variates", {"step": LOCAL_STEPS}, stochastic=True, star=True, vectors=2,
        local_steps=True,
        paper_note="paper states no step size: tuned"),
    "centralized": BaselineSpec(
        lambda p, g, s: Centralized(p, g["step"], g["momentum"]),
        "centralized training on the pooled data (ceiling)", {"step": (0.1, 0.3, 1.0, 3.0), "momentum": (0.0, 0.9)},
        communicates=False, paper={"step": 0.01, "momentum": 0.9},
        paper_note="paper code: SGD lr 0.01, momentum 0.9, 3000 epochs, weight decay 5e-4 (not applied here)"),
}


def spec(name: str) -> BaselineSpec:
    """The registered method ``name``; an unknown name is a ValueError listing the valid ones."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline '{name}' (valid: {', '.join(BASELINES)})")
    return BASELINES[name]


def grid_product(lists: dict[str, list[float] | tuple[float, ...]]) -> Grid:
    """All combinations of per-hyper-parameter value lists as (G,) columns (row-major, first name slowest)."""
    columns = torch.meshgrid(*[torch.tensor(v, dtype=torch.float64) for v in lists.values()], indexing="ij")
    return {name: column.reshape(-1) for name, column in zip(lists, columns, strict=True)}


def run_baseline(
    name: str,
    task: Task,
    shift: torch.Tensor,
    w0: torch.Tensor,
    rounds: int,
    grid: Grid,
    *,
    agents: torch.Tensor | None = None,
    schedule: Schedule | None = None,
    async_mode: str = "stale",
    seed: int = 0,
    batch: int | None = None,
    l2: float = 0.0,
    settings: Settings = Settings(),
    curve: bool = True,
) -> Curves:
    """Run baseline ``name`` for every grid column from the same W_0; ``batch`` is used by stochastic methods;
    ``curve=False``: metrics after the last round only."""
    method_spec = spec(name)
    missing = set(method_spec.hypers) - set(grid)
    if missing:
        raise ValueError(f"baseline '{name}' needs grid values for {sorted(missing)}")
    if method_spec.star:
        require_star(shift, name)
    problem = Problem(task, seed, agents, batch if method_spec.stochastic else None, l2)
    columns = {k: v.to(torch.float32) for k, v in grid.items()}
    size = next(iter(columns.values())).shape[0]
    method = method_spec.build(problem, columns, settings)
    return run_rounds(method, problem, w0, rounds, size, schedule, async_mode, shift, curve)


def communication(name: str, rounds: int, edges: int, floats: int, clients: int, settings: Settings = Settings()
                  ) -> CommCost:
    """Nominal communication of ``name`` over ``rounds`` rounds (see :mod:`surf.comm`)."""
    method_spec = spec(name)
    if not method_spec.communicates:
        return CommCost(rounds, (), floats)
    if method_spec.star:
        return server_cost(rounds, clients, settings.clients_per_round, floats, method_spec.vectors)
    return gossip_cost(rounds, edges, floats, method_spec.vectors)




def check_names(cfg: EvalConfig, server: bool) -> None:
    """``eval.baselines`` / ``long_baselines`` / ``grids``: known methods and hyper-parameters, value lists checked
    (in place), server-client methods only in star mode."""
    valid = ", ".join(BASELINES)
    for key in ("baselines", "long_baselines", "grids"):
        for name in getattr(cfg, key):
            if name not in BASELINES:
                raise ConfigError(f"eval.{key}: unknown baseline '{name}' (valid: {valid})")
    for name, grid in cfg.grids.items():
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
    star = [n for n in {*cfg.baselines, *cfg.long_baselines} if BASELINES[n].star]
    if star and not server:
        raise ConfigError(f"eval.baselines {sorted(star)} are server-client methods: they need topology.name=star "
                          "and model.server=true")
