"""The perturbations a stress scenario composes: which agents take part, which links carry messages, which graph,
how late messages arrive, and what the task looks like.

A perturbation acts at a *step* (a layer of an unrolled model; a baseline's rounds are mapped onto the same steps
by ``surf.scenarios.ScenarioSchedule``) and may implement any of

* ``active(ctx, step, memo)``: (N,) bool mask of agents that update and send (``None`` = all);
* ``shift(ctx, step, shift)``: the GSO used at the step (a time-varying graph, failed links);
* ``delays(ctx)``: (N,) int64 steps by which each agent's messages arrive late;
* ``task(ctx, task)``: a perturbed copy of the task (feature noise, relabelled classes).

Every draw is keyed by (seed, kind, position, task key, repetition, step) and never by the severity, so every method
sees the same drops and raising the severity only adds drops (common random numbers across severities). ``async``
(n agents dropped per step) is the drop model of ``surf.scenarios.drops`` itself, with no per-perturbation key, so
``surf eval -o eval.n_async=n`` and this scenario drop the same agents.

Lost messages (``link_loss``, ``surf.graphs.dynamic.drop_links``): a self-loop is not a message and is never lost, so
with every link lost ``sum_k h_k S^k W`` becomes ``sum_k h_k diag(S)^k W``: each agent uses only its own model, and
with a zero-diagonal S exactly the k = 0 term ``h_0 W``. PyG's ``dropout_edge`` is not used: it draws from torch's
global generator and cannot be keyed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from surf.config import TopologyConfig
from surf.graphs.dynamic import drop_links, one_peer_shift
from surf.graphs.topology import build_topology
from surf.scenarios.drops import agent_scores, dropped_agents, lowest
from surf.utils.errors import ensure
from surf.utils.seeding import torch_generator


@dataclass(frozen=True)
class Context:
    """What a perturbation's draws are keyed by: one task and one repetition of it."""

    seed: int
    task_key: tuple
    repeat: int
    num_agents: int
    protect: int | None = None  # an agent that is never dropped (the star graph's server)
    gso: str = "row_normalized"  # GSO of per-step graphs
    stream: tuple = ()  # (kind, position in the scenario), set per perturbation

    def generator(self, *key: object) -> torch.Generator:
        return torch_generator(self.seed, "scenario", *self.stream, *self.task_key, self.repeat, *key)

    def scores(self, step: int = 0) -> torch.Tensor:
        """Uniform (N,) scores of this perturbation's stream at ``step`` (step 0: once per task and repetition)."""
        return agent_scores(self.seed, self.task_key, step, self.repeat, self.num_agents, self.protect, self.stream)


class Perturbation:
    """Base class: every hook is a no-op."""

    kind: ClassVar[str]
    random: ClassVar[bool] = True  # whether repetitions differ

    @property
    def noop(self) -> bool:
        """True when the perturbation changes nothing (e.g. probability 0)."""
        return False

    def check(self, num_agents: int) -> None:
        """A one-line error when it cannot apply to ``num_agents`` agents (checked before anything runs)."""

    def check_steps(self, steps: int) -> None:
        """A one-line error when it would never act within ``steps`` steps (a model's layers)."""

    def active(self, ctx: Context, step: int, memo: dict) -> torch.Tensor | None:
        return None

    def shift(self, ctx: Context, step: int, shift: torch.Tensor) -> torch.Tensor:
        return shift

    def delays(self, ctx: Context) -> torch.Tensor | None:
        return None

    def task(self, ctx: Context, task: Any) -> Any:
        return task


@dataclass(frozen=True)
class AsyncAgents(Perturbation):
    """Fig. 4: ``n`` random agents per step neither update nor send (a fresh set every step)."""

    kind: ClassVar[str] = "async"
    n: int = 0

    def __post_init__(self) -> None:
        ensure(self.n >= 0, f"async: n={self.n} must be >= 0")

    @property
    def noop(self) -> bool:
        return self.n == 0

    def check(self, num_agents: int) -> None:
        ensure(self.n < num_agents, f"async: n={self.n} must be < num_agents={num_agents}")

    def active(self, ctx: Context, step: int, memo: dict) -> torch.Tensor:
        self.check(ctx.num_agents)
        return ~dropped_agents(ctx.num_agents, self.n, ctx.seed, ctx.task_key, step, ctx.repeat, ctx.protect)


@dataclass(frozen=True)
class BernoulliDropout(Perturbation):
    """Every agent independently misses each step with probability ``p``."""

    kind: ClassVar[str] = "bernoulli"
    p: float = 0.0

    def __post_init__(self) -> None:
        ensure(0.0 <= self.p <= 1.0, f"bernoulli: p={self.p} must be in [0, 1]")

    @property
    def noop(self) -> bool:
        return self.p == 0.0

    def active(self, ctx: Context, step: int, memo: dict) -> torch.Tensor:
        return ctx.scores(step) >= self.p


@dataclass(frozen=True)
class MarkovDropout(Perturbation):
    """On/off agents: down a fraction ``off_fraction`` of the time in spells of mean ``mean_down`` steps.

    Up -> down with probability ``q = f / ((1 - f) D)``, down -> up with ``1 / D``, so the mean up time is
    ``D (1 - f) / f``; the first step starts from the stationary distribution.
    """

    kind: ClassVar[str] = "markov"
    off_fraction: float = 0.0
    mean_down: float = 2.0

    def __post_init__(self) -> None:
        ensure(0.0 <= self.off_fraction < 1.0, f"markov: off_fraction={self.off_fraction} must be in [0, 1)")
        ensure(self.mean_down >= 1.0, f"markov: mean_down={self.mean_down} must be >= 1 step")
        ensure(self.fail <= 1.0, f"markov: off_fraction={self.off_fraction} with mean_down={self.mean_down} needs "
                                 "an up->down probability > 1; raise mean_down")

    @property
    def fail(self) -> float:
        return self.off_fraction / ((1.0 - self.off_fraction) * self.mean_down)

    @property
    def noop(self) -> bool:
        return self.off_fraction == 0.0

    def active(self, ctx: Context, step: int, memo: dict) -> torch.Tensor:
        while len(memo) < step:  # states of steps 1..step, each from the previous one
            t = len(memo) + 1
            u = ctx.scores(t)
            up = u >= self.off_fraction if t == 1 else torch.where(memo[t - 1], u >= self.fail, u < 1 / self.mean_down)
            memo[t] = up
        return memo[step]


@dataclass(frozen=True)
class Churn(Perturbation):
    """A fraction of agents fails permanently from step ``at`` on (neither updates nor sends again)."""

    kind: ClassVar[str] = "churn"
    fraction: float = 0.0
    at: int = 1

    def __post_init__(self) -> None:
        ensure(0.0 <= self.fraction < 1.0, f"churn: fraction={self.fraction} must be in [0, 1)")
        ensure(self.at >= 1, f"churn: at={self.at} must be >= 1 (steps are 1-based)")

    @property
    def noop(self) -> bool:
        return self.fraction == 0.0

    def check_steps(self, steps: int) -> None:
        ensure(self.at <= steps, f"churn: at={self.at} is after the last step ({steps}), so no agent would ever fail; "
               f"set at <= {steps} in the scenario file or use a deeper model")

    def active(self, ctx: Context, step: int, memo: dict) -> torch.Tensor:
        if step < self.at:
            return torch.ones(ctx.num_agents, dtype=torch.bool)
        return ~lowest(ctx.scores(), round(self.fraction * ctx.num_agents))


@dataclass(frozen=True)
class Stragglers(Perturbation):
    """A fraction of agents (fixed per task and repetition) whose messages arrive ``delay`` steps late."""

    kind: ClassVar[str] = "stragglers"
    fraction: float = 0.0
    delay: int = 1

    def __post_init__(self) -> None:
        ensure(0.0 <= self.fraction <= 1.0, f"stragglers: fraction={self.fraction} must be in [0, 1]")
        ensure(self.delay >= 0, f"stragglers: delay={self.delay} must be >= 0")

    @property
    def noop(self) -> bool:
        return self.fraction == 0.0 or self.delay == 0

    def delays(self, ctx: Context) -> torch.Tensor:
        late = lowest(ctx.scores(), round(self.fraction * ctx.num_agents))
        return late.long() * self.delay


@dataclass(frozen=True)
class LinkLoss(Perturbation):
    """Every message (or, ``symmetric``, every undirected link) is lost with probability ``p`` at each step."""

    kind: ClassVar[str] = "link_loss"
    p: float = 0.0
    symmetric: bool = False  # true: a failed link loses both directions
    lost: str = "zero"  # zero | renormalize

    def __post_init__(self) -> None:
        ensure(0.0 <= self.p <= 1.0, f"link_loss: p={self.p} must be in [0, 1]")
        ensure(self.lost in ("zero", "renormalize"), f"link_loss: lost={self.lost!r} must be zero or renormalize")

    @property
    def noop(self) -> bool:
        return self.p == 0.0

    def shift(self, ctx: Context, step: int, shift: torch.Tensor) -> torch.Tensor:
        return drop_links(shift, self.p, ctx.generator(step), self.symmetric, self.lost == "renormalize")


@dataclass(frozen=True)
class TimeVarying(Perturbation):
    """A new random graph of ``family`` at every step (keyed), with the run's GSO."""

    kind: ClassVar[str] = "time_varying"
    family: str = "erdos_renyi"
    params: dict = dataclasses.field(default_factory=lambda: {"p": 0.05})

    def shift(self, ctx: Context, step: int, shift: torch.Tensor) -> torch.Tensor:
        cfg = TopologyConfig(name=self.family, params=dict(self.params), gso=ctx.gso, resample_per_task=True,
                             allow_disconnected=True)
        key = ("scenario", *ctx.stream, *ctx.task_key, ctx.repeat, step)
        return build_topology(cfg, ctx.num_agents, ctx.seed, key).shift.to(shift.device)


@dataclass(frozen=True)
class OnePeerExponential(Perturbation):
    """One-peer exponential graph: at step t agent i averages with agent (i + 2^((t-1) mod log2 N)) mod N."""

    kind: ClassVar[str] = "one_peer_exponential"
    random: ClassVar[bool] = False

    def shift(self, ctx: Context, step: int, shift: torch.Tensor) -> torch.Tensor:
        return one_peer_shift(ctx.num_agents, step).to(shift.device)


@dataclass(frozen=True)
class FeatureNoise(Perturbation):
    """Gaussian noise of std ``std`` added to every feature (not the bias column) of the task's samples."""

    kind: ClassVar[str] = "feature_noise"
    std: float = 0.0

    def __post_init__(self) -> None:
        ensure(self.std >= 0.0, f"feature_noise: std={self.std} must be >= 0")

    @property
    def noop(self) -> bool:
        return self.std == 0.0

    def task(self, ctx: Context, task: Any) -> Any:
        gen = ctx.generator()
        noisy = {}
        for name in ("x_train", "x_test"):
            x = getattr(task, name)
            noise = torch.randn(x.shape, generator=gen).to(x.device) * self.std
            noise[..., -1] = 0.0
            noisy[name] = x + noise
        return dataclasses.replace(task, **noisy)


@dataclass(frozen=True)
class Relabel(Perturbation):
    """The task's classes relabelled by a keyed random permutation (never the identity)."""

    kind: ClassVar[str] = "relabel"

    def task(self, ctx: Context, task: Any) -> Any:
        gen = ctx.generator()
        while True:
            permutation = torch.randperm(task.num_classes, generator=gen)
            if not torch.equal(permutation, torch.arange(task.num_classes)):
                return task.relabelled(permutation)


KINDS: dict[str, type[Perturbation]] = {
    cls.kind: cls
    for cls in (AsyncAgents, BernoulliDropout, MarkovDropout, Churn, Stragglers, LinkLoss, TimeVarying,
                OnePeerExponential, FeatureNoise, Relabel)
}
