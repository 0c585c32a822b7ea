"""A sweep's results as data: every finished (trained cell, condition) entry with its typed summary and resolved
config, grouped over seeds, and the statistics the report tables read."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from surf.config import from_dict
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


@dataclass
class Group:
    """Entries that differ only by seed."""

    label: str
    cond_label: str
    entries: list[Entry]

    @property
    def first(self) -> Entry:
        return self.entries[0]

    def stat(self, get, task_std=None) -> tuple[float, float, int]:
        """(mean, std, n): std over seeds, or ``task_std(summary)`` (std over tasks) when there is one seed."""
        values = [get(e.summary) for e in self.entries]
        if len(values) > 1:
            return statistics.fmean(values), statistics.stdev(values), len(values)
        return values[0], (task_std(self.first.summary) if task_std else float("nan")), 1


def _label(overrides: dict) -> str:
    rest = {k: v for k, v in overrides.items() if k != "seed"}
    return cell_name(rest) if rest else "base"


def load_entries(sweep_dir: Path) -> tuple[dict, list[Entry], list[str]]:
    """The sweep index, every finished (trained cell, condition) entry, and the names of unfinished cells."""
    index_path = sweep_dir / "sweep.json"
    if not index_path.is_file():
        raise ConfigError(f"no sweep.json in {sweep_dir}; run `surf sweep CONFIG --out {sweep_dir}` first")
    index = json.loads(index_path.read_text())
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
            summary = load_summary(path / "summary.json")
            config = yaml.safe_load((path / "config.yaml").read_text())
            entries.append(Entry(cell["overrides"], cond["overrides"], summary, config))
    return index, entries, missing


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


def task_std(summary: Summary) -> float:
    return summary.final.get("accuracy_std", float("nan"))


def mean_curve(g: Group, which: str, metric: str) -> list[float]:
    curves = [getattr(e.summary, which)[metric] for e in g.entries]
    return [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]


def best_baseline(summary: Summary, rounds: int, relabelled: bool) -> tuple[str, float] | None:
    """The most accurate baseline that ran exactly ``rounds`` rounds (any method, tuned on validation tasks)."""
    key = "accuracy_relabelled" if relabelled else "accuracy"
    found = [(n, b.final[key]) for n, b in summary.comparisons.items() if b.steps == rounds and n != "centralized"]
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
