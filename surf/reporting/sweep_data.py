"""A sweep's results as data: every finished (trained cell, condition) entry with its typed summary and resolved
config, grouped over seeds, and the statistics the report tables read.

Over the seeds of a group (n runs that differ only by ``seed``) a quantity is reported as its mean and the
half-width of its 95 % confidence interval, ``t_{0.975, n-1} s / sqrt(n)`` (s the sample std over seeds; t = 12.706,
4.303, 3.182 for n = 2, 3, 4). The *task spread* is separate: the std over meta-test tasks (x drop repetitions) of
one run, averaged over seeds. A paired comparison (a model against a baseline on the same seed: the same tasks,
W_0 and drops) is the mean of the per-seed differences with their own 95 % CI; "the CI is above 0" means
``mean - half-width > 0``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from scipy.stats import t as student_t

from surf.config import from_dict, upgraded
from surf.data.tasks import TaskSampler
from surf.evaluation.summary import Summary, load_summary
from surf.graphs.topology import build_topology
from surf.utils.errors import ConfigError
from surf.utils.naming import cell_name


@dataclass
class Entry:
    """One evaluated condition: a trained cell (``train``) under an eval cell's overrides (``cond``)."""

    train: dict  # trained cell's overrides
    cond: dict  # eval cell's overrides ({} = as trained)
    summary: Summary
    config: dict


@dataclass(frozen=True)
class Stat:
    """A quantity over the seeds of a group: mean, half-width of its 95 % CI (nan with one seed), number of seeds,
    and the task spread (mean over seeds of the std over meta-test tasks; nan when not measured)."""

    mean: float
    ci: float
    n: int
    spread: float = float("nan")

    @property
    def above_zero(self) -> bool:
        """The whole 95 % CI is above 0 (with one seed: never established)."""
        return self.n > 1 and self.mean - self.ci > 0


def t_quantile(n: int) -> float:
    """``t_{0.975, n-1}``: the two-sided 95 % quantile of Student's t with n - 1 degrees of freedom (n >= 2)."""
    return float(student_t.ppf(0.975, n - 1))


def mean_ci(values: list[float]) -> Stat:
    """Mean and 95 % CI half-width ``t_{0.975, n-1} s / sqrt(n)`` of per-seed values (ci = nan when n = 1)."""
    n = len(values)
    if n == 1:
        return Stat(values[0], float("nan"), 1)
    return Stat(statistics.fmean(values), t_quantile(n) * statistics.stdev(values) / math.sqrt(n), n)


@dataclass
class Group:
    """Entries that differ only by seed."""

    label: str
    cond_label: str
    entries: list[Entry]

    @property
    def first(self) -> Entry:
        return self.entries[0]

    def has_baseline(self, name: str) -> bool:
        """Whether every seed's evaluation ran baseline ``name``."""
        return all(name in e.summary.comparisons for e in self.entries)

    def stat(self, get: Callable[[Summary], float], spread: Callable[[Summary], float] | None = None) -> Stat:
        """``get`` over the seeds (mean, 95 % CI), with the mean task spread ``spread(summary)`` if given."""
        result = mean_ci([get(e.summary) for e in self.entries])
        if spread is None:
            return result
        return Stat(result.mean, result.ci, result.n, statistics.fmean(spread(e.summary) for e in self.entries))

    def paired(self, get: Callable[[Summary], float], reference: Callable[[Summary], float]) -> Stat:
        """``get - reference`` on the same seed (the same summary: same tasks, W_0 and drops), over the seeds."""
        return mean_ci([get(e.summary) - reference(e.summary) for e in self.entries])


def paired_across(a: Group, b: Group, get: Callable[[Summary], float]) -> Stat | None:
    """``get`` of group a minus group b, matched by seed (e.g. a model under drops minus the same model clean);
    None when they share no seed."""
    seeds = {e.config["seed"]: e for e in b.entries}
    pairs = [(e, seeds[e.config["seed"]]) for e in a.entries if e.config["seed"] in seeds]
    return mean_ci([get(x.summary) - get(y.summary) for x, y in pairs]) if pairs else None


def _label(overrides: dict) -> str:
    """A group's label: the cell's ``name`` override when it sets one (ablation cells), else its overrides without
    the seed."""
    if isinstance(overrides.get("name"), str):
        return overrides["name"]
    rest = {k: v for k, v in overrides.items() if k != "seed"}
    return cell_name(rest) if rest else "base"


_CELL_KEYS = {"name", "overrides", "path", "evals"}


def _read_index(sweep_dir: Path) -> dict:
    """``sweep.json``, checked: a missing, unreadable or foreign file is a one-line error."""
    path = sweep_dir / "sweep.json"
    rerun = f"run `surf sweep CONFIG --out {sweep_dir}` (it rewrites the index; finished cells are kept)"
    if not path.is_file():
        raise ConfigError(f"no sweep.json in {sweep_dir}; {rerun}")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({str(exc).splitlines()[0]}); {rerun}") from None
    cells = index.get("cells") if isinstance(index, dict) else None
    if not (isinstance(cells, list) and {"name", "sweep_file"} <= index.keys()
            and isinstance(index.get("figure"), str | None)  # it picks the report's section: a mapping was a traceback
            and all(isinstance(c, dict) and _CELL_KEYS <= c.keys() for c in cells)):
        raise ConfigError(f"{path} is not a sweep index (a name, a sweep file, a figure name or none, and cells with "
                          f"{sorted(_CELL_KEYS)}); {rerun}")
    return index


def load_entries(sweep_dir: Path) -> tuple[dict, list[Entry], list[str]]:
    """The sweep index, every finished (trained cell, condition) entry, and the names of unfinished cells."""
    index = _read_index(sweep_dir)
    entries, missing = [], []
    for cell in index["cells"]:
        conditions = cell["evals"] or [{"name": "base", "overrides": {}, "path": cell["path"]}]
        if cell["evals"] and all(e["path"] != cell["path"] for e in cell["evals"]):
            conditions = [{"name": "as trained", "overrides": {}, "path": cell["path"]}, *conditions]
        for cond in conditions:
            path = Path(cond["path"])
            if not (path / "summary.json").exists():
                missing.append(f"{cell['name']} / {cond['name']}")
                continue
            try:
                summary = load_summary(path / "summary.json")
            except ConfigError as exc:
                raise ConfigError(f"{exc}; delete it and rerun the sweep to run the cell again (a trained cell "
                                  "resumes from its checkpoint)") from None
            try:
                config = upgraded(yaml.safe_load((path / "config.yaml").read_text()))  # fields added since: defaults
                if not isinstance(config, dict) or not config:
                    raise ConfigError("empty or not a mapping")
            except (OSError, yaml.YAMLError, ConfigError):
                raise ConfigError(f"{path / 'config.yaml'} is missing or corrupt beside a finished summary; delete "
                                  f"{path} and rerun the sweep to run the cell again") from None
            entries.append(Entry(cell["overrides"], cond["overrides"], summary, config))
    return index, entries, missing


def graph_label(g: Group) -> str:
    """The group's graph; an evaluation on another graph is named by that graph alone, other conditions follow it."""
    graph = g.first.config["topology"]["name"]
    return graph if g.cond_label.startswith("topology.name") else f"{graph} ({g.cond_label})"


def group(entries: list[Entry]) -> list[Group]:
    groups: dict[tuple[str, str], Group] = {}
    for entry in entries:
        key = (_label(entry.train), _label(entry.cond) if entry.cond else "as trained")
        groups.setdefault(key, Group(key[0], key[1], [])).entries.append(entry)
    return list(groups.values())


def acc(summary: Summary) -> float:
    return summary.final["accuracy"]


def acc_rel(summary: Summary) -> float:
    return summary.final["accuracy_relabelled"]


def baseline_accuracy(name: str, key: str = "accuracy") -> Callable[[Summary], float]:
    """The getter of baseline ``name``'s final accuracy (plain, or ``accuracy_relabelled``) in a summary."""
    return lambda s: s.comparisons[name].final[key]


def task_std(summary: Summary) -> float:
    return summary.final.get("accuracy_std", float("nan"))


def mean_curve(g: Group, which: str, metric: str) -> list[float]:
    curves = [getattr(e.summary, which)[metric] for e in g.entries]
    return [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]


def mean_baseline_curves(g: Group, metric: str = "accuracy") -> dict[str, list[float]]:
    """Every baseline's per-round ``metric`` averaged over the group's seeds, like the model's :func:`mean_curve`
    (a baseline is kept when every seed's evaluation ran it and recorded the curve)."""
    curves: dict[str, list[float]] = {}
    for name in g.first.summary.comparisons:
        runs = [e.summary.comparisons[name].per_step.get(metric) if name in e.summary.comparisons else None
                for e in g.entries]
        if all(runs) and len({len(run) for run in runs}) == 1:
            curves[name] = [statistics.fmean(run[i] for run in runs) for i in range(len(runs[0]))]
    return curves


def best_baseline(g: Group, rounds: int, relabelled: bool) -> tuple[str, float] | None:
    """The baseline (any method, tuned on validation tasks) that ran exactly ``rounds`` rounds in every seed's
    evaluation with the highest mean accuracy over the group's seeds, and that mean."""
    key = "accuracy_relabelled" if relabelled else "accuracy"
    names = [n for n in g.first.summary.comparisons if n != "centralized" and all(
        n in e.summary.comparisons and e.summary.comparisons[n].steps == rounds for e in g.entries)]
    found = [(n, g.stat(baseline_accuracy(n, key)).mean) for n in names]
    return max(found, key=lambda item: item[1]) if found else None


def graph_info(config: dict) -> dict:
    """Spectral gap, edge count and bytes per round of a cell's graph (rebuilt from its resolved config)."""
    cfg = from_dict(config)
    topo = build_topology(cfg.topology, cfg.num_agents, cfg.seed)
    spectral = topo.spectral()
    sampler = TaskSampler(cfg)
    message = sampler.num_features * sampler.num_classes * 4
    return {"spectral_gap": spectral["spectral_gap"], "num_edges": spectral["num_edges"],
            "bytes_per_round": 2 * spectral["num_edges"] * message}
