"""Sweeps: a base config, a ``matrix`` of overrides (cartesian product) and optional eval-only cells.

A sweep file::

    name: fig4_async                  # default: the file's stem
    figure: fig4                      # which paper figure ``surf report`` puts side by side (optional)
    base: quickstart.yaml             # a config path (relative to this file) or an inline mapping
    set: {trainer.steps: 1000}        # overrides applied to every cell (optional; `surf sweep -o k=v` wins over all)
    matrix:                           # dotted key -> values; one trained cell per combination
      constraints.kind: [gradient_norm, none]
      seed: [0, 1]
    include: [{model.variant: paper}] # extra trained cells (overrides on base + set)
    seeds: [0, 1, 2]                  # every trained cell (matrix and include) once per seed (optional)
    eval_matrix:                      # eval-only cells: each trained model re-evaluated under these overrides,
      eval.n_async: [2, 4]            # the same code path as ``surf eval RUN_DIR -o ...`` (nothing retrained)
    eval_include: [{topology.name: ring}]

Trained cells live in a store shared by all sweeps (default ``runs/trained``) as ``<cell name>-<config hash>`` (a
cell that sets ``name`` is named by it and its seed only), so
two sweeps that need the same trained model train it once. Eval cells live in ``<trained cell>/eval/<name>``.
A cell whose ``summary.json`` exists is skipped; a trained cell with a checkpoint but no summary is resumed
(``surf run --resume``); anything else left by an interrupted cell is cleared and the cell restarts
(``surf.app.cells``). The sweep directory gets ``sweep.json`` (the index ``surf report`` reads) and a link per
trained cell. ``surf.app.sweep_run`` runs the cells.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from surf import config as config_mod
from surf.app.cells import cell_state, run_cell
from surf.app.registry import REPO, check_evaluation_keys, check_read, config_from_dict
from surf.config import Config
from surf.reporting.sweep_report import FIGURES
from surf.utils.errors import ConfigError
from surf.utils.io import atomic_write
from surf.utils.naming import cell_name, is_plain_name

SWEEP_KEYS = ("name", *config_mod.SWEEP_ONLY)


@dataclass
class Cell:
    """One run of a sweep: its overrides, resolved config and directory; ``parent`` is set for eval-only cells."""

    name: str
    overrides: dict[str, Any]
    cfg: Config
    path: Path
    parent: Cell | None = None
    evals: list[Cell] = field(default_factory=list)

    @property
    def state(self) -> str:
        """``finished``, ``resume`` or ``todo`` (``surf.app.cells.cell_state``)."""
        return cell_state(self.path, self.parent is None)

    @property
    def done(self) -> bool:
        return self.state == "finished"

    @property
    def label(self) -> str:
        """``<trained cell>`` or ``<trained cell> / <eval cell>``."""
        return self.name if self.parent is None else f"{self.parent.name} / {self.name}"

    def run(self, progress: bool) -> str:
        """Run this cell here, crash-safely (``surf.app.cells.run_cell``); returns the state it was found in."""
        return run_cell(self.cfg, self.path, self.parent.path if self.parent else None, progress)


def config_hash(cfg: Config | dict) -> str:
    """Short digest of a resolved config (or its dict) without its ``name`` (a label: it changes no number) and its
    execution-only fields (``config.identity``: the thread count; the compact classifier gives the same bits on any
    count, elsewhere the count only reorders a few floating-point sums): two cells with the same config share a
    trained model, whichever sweep or config file named them and however many threads trained it."""
    config = cfg if isinstance(cfg, dict) else config_mod.to_dict(cfg)
    text = json.dumps({**config_mod.identity(config), "name": None}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _as_override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML, so config.parse_overrides reads it back exactly


def _expand(matrix: dict[str, list], include: list[dict], where: str) -> list[dict[str, Any]]:
    """The cartesian product of ``matrix`` followed by the explicit ``include`` cells (duplicates dropped).

    Without a matrix, ``include`` lists every cell; with neither, the sweep has one cell: the base config."""
    if not isinstance(matrix, dict) or not all(isinstance(v, list) and v for v in matrix.values()):
        raise ConfigError(f"{where}: 'matrix' must map dotted keys to non-empty lists, e.g. seed: [0, 1]")
    if not isinstance(include, list) or not all(isinstance(c, dict) for c in include):
        raise ConfigError(f"{where}: 'include' must be a list of mappings of dotted keys to values")
    cells = [dict(zip(matrix, combo, strict=True)) for combo in itertools.product(*matrix.values())]
    if not matrix and include:
        cells = []  # only the explicit cells (an empty matrix alone means the one base cell)
    cells += [dict(c) for c in include]
    unique: list[dict] = []
    for cell in cells:
        if cell not in unique:
            unique.append(cell)
    return unique


def _trained_name(overrides: dict[str, Any]) -> str:
    """A trained cell's name: from its overrides, or only its ``name`` (and seed) when it sets one (ablation cells
    are labelled by their config name; the store directory still carries the config hash)."""
    if isinstance(overrides.get("name"), str):
        return cell_name({key: overrides[key] for key in ("name", "seed") if key in overrides})
    return cell_name(overrides)


def _with_seeds(cells: list[dict[str, Any]], seeds: Any, where: str) -> list[dict[str, Any]]:
    """Every cell once per seed of ``seeds`` (``seed`` last in its overrides); the cells unchanged without it."""
    if seeds is None:
        return cells
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                            for s in seeds):
        raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers, e.g. [0, 1, 2]")
    return [{**{k: v for k, v in cell.items() if k != "seed"}, "seed": seed} for cell in cells for seed in seeds]


def _base_raw(spec: dict, sweep_path: Path) -> dict:
    """The base config mapping: inline, or read from a path relative to the sweep file (name = its stem)."""
    base = spec.get("base", {})
    if isinstance(base, dict):
        return base
    if not isinstance(base, str):
        raise ConfigError(f"{sweep_path}: 'base' must be a config mapping or the path of a config file")
    path = sweep_path.parent / base
    if not path.is_file():
        raise ConfigError(f"{sweep_path}: base config '{base}' not found (give a path relative to the sweep file)")
    raw = config_mod.read_mapping(path, "a mapping of config sections")
    raw.setdefault("name", path.stem)
    return raw


class Sweep:
    """A parsed sweep file: every cell resolved and validated before anything runs."""

    def __init__(self, path: str | Path, out: str | Path | None = None, store: str | Path | None = None,
                 overrides: list[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"sweep file '{self.path}' not found (see simulations/fig*.yaml)")
        spec = config_mod.read_mapping(self.path, "a sweep: a mapping of sweep keys")
        unknown = [k for k in spec if k not in SWEEP_KEYS]
        if unknown and all(k in config_mod.Config.__dataclass_fields__ for k in spec):
            raise ConfigError(f"{self.path} is a run config, not a sweep: run it with `surf run {self.path}`, or sweep "
                              "it from a file with `base:` and a `matrix:` (docs/sweeps.md)")
        if unknown:
            raise ConfigError(f"{self.path}: unknown sweep key '{unknown[0]}' (valid: {', '.join(SWEEP_KEYS)})")
        self.spec = spec
        for key in ("name", "figure", "description"):  # labels: a list or mapping was kept, and broke surf report
            if key in spec and not isinstance(spec[key], str):
                raise ConfigError(f"{self.path}: {key} must be a string, not {spec[key]!r}")
        self.name = spec.get("name", self.path.stem)
        if not is_plain_name(self.name):
            raise ConfigError(f"{self.path}: name={self.name!r} names the sweep folder runs/sweeps/<name>: use a plain "
                              "name without slashes")
        self.figure = spec.get("figure")
        if self.figure is not None and self.figure not in FIGURES:  # a typo: a report without its section, silently
            raise ConfigError(f"{self.path}: figure={self.figure!r} is not one of {', '.join(FIGURES)} (the report "
                              "section it selects); fix it or drop it")
        forced = dict(config_mod.parse_overrides(overrides or []))  # -o on the command line: every cell, last
        self.forced = [_as_override(key, value) for key, value in forced.items()]  # recorded: the report's command
        suffix = f"__{cell_name(forced)}" if forced else ""
        # absolute: a cell's paths (and what it records, e.g. evaluated_from) are the same in every process
        self.out = Path(out).resolve() if out else REPO / "runs" / "sweeps" / (self.name + suffix)
        self.store = Path(store).resolve() if store else REPO / "runs" / "trained"
        base = _base_raw(spec, self.path)
        common = spec.get("set", {}) or {}
        if not isinstance(common, dict):
            raise ConfigError(f"{self.path}: 'set' must map dotted keys to values, e.g. trainer.steps: 600")
        self.cells: list[Cell] = []
        trained = _expand(spec.get("matrix", {}) or {}, spec.get("include", []) or [], str(self.path))
        for overrides in _with_seeds(trained, spec.get("seeds"), str(self.path)):
            name = _trained_name(overrides)
            cfg = self._resolve(base, {**common, **overrides, **forced}, "cell " + name)
            if any(cell.cfg == cfg for cell in self.cells):
                continue  # the same resolved config as an earlier cell: one run
            self.cells.append(Cell(name, overrides, cfg, self._trained_dir(name, cfg)))
        evals = _expand(spec.get("eval_matrix", {}) or {}, spec.get("eval_include", []) or [], str(self.path))
        for family in sorted({cell.cfg.family for cell in self.cells}):
            check_evaluation_keys([key for overrides in evals for key in overrides], family,
                                  f"{self.path}: eval cell key")
        for cell in self.cells:
            trained = config_mod.to_dict(cell.cfg)
            for overrides in evals if ("eval_matrix" in spec or "eval_include" in spec) else []:
                name = cell_name(overrides)
                cfg = self._resolve(trained, overrides, f"eval cell {name} of {cell.name}")
                path = cell.path if config_mod.to_dict(cfg) == trained else cell.path / "eval" / name
                cell.evals.append(Cell(name, overrides, cfg, path, parent=cell))

    @staticmethod
    def _resolve(raw: dict, overrides: dict[str, Any], where: str) -> Config:
        try:
            cfg = config_from_dict(raw, [_as_override(k, v) for k, v in overrides.items()])
            check_read(cfg, list(overrides), "key")  # a key the cell's family never reads: identical cells
            return cfg
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def _trained_dir(self, name: str, cfg: Config) -> Path:
        """``<name>-<hash>`` in the store, or an existing trained cell with the same config.

        A stored cell matches when its saved config, read with today's defaults for keys added since, has the same
        hash: neither a new config field nor a change of what the hash leaves out orphans the models trained before.
        """
        digest = config_hash(cfg)
        if not self.store.exists():
            return self.store / f"{name}-{digest}"
        existing = sorted(self.store.glob(f"*-{digest}"))
        if existing:
            return existing[0]
        for saved in sorted(self.store.glob("*/config.yaml")):
            try:
                stored = config_mod.upgraded(yaml.safe_load(saved.read_text()))  # today's defaults for new keys
            except yaml.YAMLError:
                continue  # unreadable: not a match
            if isinstance(stored, dict) and config_hash(stored) == digest:
                return saved.parent
        return self.store / f"{name}-{digest}"

    def all_cells(self) -> list[Cell]:
        """Trained cells, each followed by its eval cells: the order they run in."""
        return [c for cell in self.cells for c in (cell, *cell.evals)]

    def index(self) -> dict:
        """``sweep.json``: what ``surf report`` aggregates."""
        def entry(cell: Cell) -> dict:
            return {"name": cell.name, "overrides": cell.overrides, "path": str(cell.path.resolve()),
                    "state": cell.state, "evals": [entry(e) for e in cell.evals]}
        return {"name": self.name, "figure": self.figure, "sweep_file": str(self.path.resolve()),
                "overrides": self.forced, "description": self.spec.get("description", ""),
                "cells": [entry(c) for c in self.cells]}

    def write_index(self) -> None:
        index = self.out / "sweep.json"
        if index.is_dir():
            raise ConfigError(f"{index} is a folder, not the sweep's index; move it away and rerun")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(index, json.dumps(self.index(), indent=2) + "\n")
        for cell in self.cells:  # a readable link per trained cell
            link = self.out / cell.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(cell.path.resolve(), target_is_directory=True)
