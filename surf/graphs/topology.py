"""Topologies by name: a graph family from ``surf.graphs.generators.FAMILIES`` or a YAML spec in ``topologies/``
naming one, drawn with keyed randomness, checked for connectivity, with its GSO (``surf.graphs.gso``).

Graph randomness is keyed by the seed (and the task when ``topology.resample_per_task``), never by draw order.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from surf.config import TopologyConfig, read_mapping
from surf.graphs.generators import FAMILIES, TOPOLOGY_DIR
from surf.graphs.gso import graph_edges, shift_operator
from surf.graphs.spectra import top_moduli
from surf.utils.errors import ConfigError, TopologyError, ensure
from surf.utils.seeding import numpy_generator
from surf.utils.typed import coerce_value

_SPEC_KEYS = ("description", "family", "params", "gso")


@dataclass
class Topology:
    """A graph on nodes 0..N-1 and its GSO, a sparse CSR float32 (N, N) tensor."""

    graph: nx.Graph
    shift: torch.Tensor
    name: str
    gso: str

    @property
    def edge_index(self) -> torch.Tensor:
        """PyG ``edge_index`` (2, E) of the graph: both directions, no self-loops."""
        return graph_edges(self.graph)[0]

    @property
    def edge_weight(self) -> torch.Tensor:
        """PyG ``edge_weight`` (E,) of the adjacency, aligned with :attr:`edge_index`."""
        return graph_edges(self.graph)[1]

    def dense(self) -> torch.Tensor:
        """The GSO as a dense float32 tensor."""
        return self.shift.to_dense()

    def spectral(self) -> dict[str, float]:
        """Eigenvalue moduli of S (lambda_2: second largest) and degree statistics of the graph."""
        moduli = top_moduli(self.shift)
        lambda_2 = float(moduli[1]) if len(moduli) > 1 else 0.0
        degrees = [d for _, d in self.graph.degree()]
        return {
            "lambda_2": lambda_2,
            "spectral_gap": 1.0 - lambda_2,
            "lambda_max": float(moduli[0]),
            "mean_degree": float(np.mean(degrees)),
            "max_degree": float(max(degrees)),
            "num_edges": float(self.graph.number_of_edges()),
        }

    def to(self, device: torch.device | str) -> Topology:
        """The same topology with the GSO on ``device``."""
        return dataclasses.replace(self, shift=self.shift.to(device))




_DISCONNECTED_HINTS = {
    "erdos_renyi": "raise params.p, set params.connected=true or topology.allow_disconnected=true",
    "erdos_renyi_paper": "raise params.p or set topology.allow_disconnected=true",
}


# ---------------------------------------------------------------- graphs by name, specs


def _spec_paths() -> dict[str, Path]:
    return {path.stem: path for path in sorted(TOPOLOGY_DIR.glob("*.yaml"))}


def _unknown(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, sorted(set(FAMILIES) | set(_spec_paths())), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown topology '{name}' (see `surf list`{hint})")


def _load_spec(path: Path) -> dict[str, Any]:
    """A spec file's mapping, checked: known keys, a family from FAMILIES, params a mapping."""
    spec = read_mapping(path, f"a mapping with keys {', '.join(_SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    ensure(not unknown, f"{path}: unknown keys {unknown} (valid: {', '.join(_SPEC_KEYS)})")
    ensure(spec.get("family") in FAMILIES, f"{path}: family {spec.get('family')!r} is not one of {sorted(FAMILIES)}")
    ensure(isinstance(spec.get("params") or {}, dict), f"{path}: params must be a mapping")
    return spec


def build_graph(name: str, num_agents: int, params: dict, rng: np.random.Generator) -> nx.Graph:
    """The graph of family ``name`` on nodes 0..N-1 (no self-loops); params are checked against the builder."""
    builder = FAMILIES.get(name)
    if builder is None:
        raise _unknown(name)
    hints = typing.get_type_hints(builder)
    signature = inspect.signature(builder).parameters
    accepted = list(signature)[2:]
    kwargs = {}
    for key, value in params.items():
        if key not in accepted:
            raise ConfigError(f"topology '{name}' has no parameter '{key}' (valid: {', '.join(accepted) or 'none'})")
        kwargs[key] = coerce_value(value, hints[key], f"topology.params.{key}")
    missing = [k for k in accepted if k not in kwargs and signature[k].default is inspect.Parameter.empty]
    ensure(not missing, f"topology '{name}' needs {', '.join(f'params.{k}' for k in missing)}")
    graph = builder(num_agents, rng, **kwargs)
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))
    graph.graph["family"] = name
    return graph


def build_topology(cfg: TopologyConfig, num_agents: int, seed: int, task_key: tuple = ()) -> Topology:
    """Resolve ``cfg.name`` (spec or family), draw the graph, check connectivity and build the GSO.

    A spec's gso is used unless ``topology.gso`` was changed from its default; cfg.params override spec params.
    """
    family, params, gso = cfg.name, dict(cfg.params), cfg.gso
    spec_path = _spec_paths().get(cfg.name)
    if spec_path is not None:
        spec = _load_spec(spec_path)
        family, params = spec["family"], {**(spec.get("params") or {}), **cfg.params}
        if spec.get("gso") and cfg.gso == TopologyConfig.gso:
            gso = spec["gso"]
    elif cfg.name not in FAMILIES:
        raise _unknown(cfg.name)
    keys = ("graph", *task_key) if cfg.resample_per_task else ("graph",)
    graph = build_graph(family, num_agents, params, numpy_generator(seed, *keys))
    if not cfg.allow_disconnected and not nx.is_connected(graph):
        hint = _DISCONNECTED_HINTS.get(family, "use a connected graph or set topology.allow_disconnected=true")
        raise TopologyError(f"graph '{cfg.name}' (N={num_agents}) is disconnected "
                            f"({nx.number_connected_components(graph)} components); {hint}")
    return Topology(graph=graph, shift=shift_operator(graph, gso, cfg.laplacian_alpha), name=cfg.name, gso=gso)


def list_topologies() -> dict[str, str]:
    """Family and spec names -> one-line description (a spec shadows a family of the same name)."""
    listing = {name: (inspect.getdoc(builder) or "").splitlines()[0] for name, builder in FAMILIES.items()}
    for name, path in _spec_paths().items():
        spec = _load_spec(path)
        listing[name] = str(spec.get("description") or f"spec of family '{spec['family']}'")
    return listing
