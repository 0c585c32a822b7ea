"""Graph families, specs, edge lists and the properties of every graph shift operator."""

import networkx as nx
import numpy as np
import pytest
import torch

from surf.config import TopologyConfig
from surf.graphs.generators import FAMILIES
from surf.graphs.gso import GSOS, shift_operator
from surf.graphs.topology import Topology, build_graph, build_topology, list_topologies
from surf.utils.errors import ConfigError, TopologyError

# small N needs a denser ER to be connected
DENSE_ER = {"erdos_renyi": {"p": 0.5, "connected": True}, "erdos_renyi_paper": {"p": 0.4}}
RANDOM_FAMILIES = ("regular3_paper", "random_regular", "erdos_renyi", "erdos_renyi_paper", "small_world")


def rng(seed=0):
    return np.random.default_rng(seed)


def edges(graph):
    return sorted(tuple(sorted(e)) for e in graph.edges())


@pytest.mark.parametrize("n", [12, 16, 100])
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"edge_list"}))
def test_every_family_builds_connected_on_nodes_0_to_n(family, n):
    graph = build_graph(family, n, DENSE_ER.get(family, {}), rng())
    assert sorted(graph.nodes) == list(range(n))
    assert nx.is_connected(graph)
    assert nx.number_of_selfloops(graph) == 0


def test_regular3_paper_matches_the_authors_construction():
    degrees = sorted(d for _, d in build_graph("regular3_paper", 100, {}, rng()).degree())
    assert degrees.count(3) == 98 and degrees.count(2) == 2
    graph = build_graph("regular3_paper", 100, {}, rng(1))
    assert graph.number_of_edges() == 100 + 49  # ring + chords i-(i+51), i = 0..48, before the permutation
    assert edges(graph) != edges(build_graph("regular3_paper", 100, {}, rng(2)))  # random relabelling


def test_family_shapes():
    assert all(d == 3 for _, d in build_graph("random_regular", 100, {}, rng()).degree())
    star = build_graph("star", 10, {}, rng())
    assert star.degree(0) == 9 and all(star.degree(i) == 1 for i in range(1, 10))
    assert sorted(d for _, d in build_graph("grid", 12, {"rows": 3}, rng()).degree()) == [2] * 4 + [3] * 6 + [4] * 2
    assert all(d == 4 for _, d in build_graph("torus", 16, {}, rng()).degree())
    assert all(d == 7 for _, d in build_graph("exponential", 16, {}, rng()).degree())  # +-1, +-2, +-4, 8 = -8
    assert build_graph("complete", 7, {}, rng()).number_of_edges() == 21


@pytest.mark.parametrize("gso", GSOS)
@pytest.mark.parametrize("family", ["regular3_paper", "erdos_renyi_paper", "star", "grid", "line"])
def test_gso_properties(family, gso):
    graph = build_graph(family, 16, DENSE_ER.get(family, {}), rng())
    shift = shift_operator(graph, gso)
    assert shift.layout == torch.sparse_csr and shift.dtype == torch.float32 and shift.shape == (16, 16)
    s = shift.to_dense().double()
    ones = torch.ones(16, dtype=torch.float64)
    if gso == "row_normalized":
        assert torch.allclose(s @ ones, ones, atol=1e-6) and (s >= 0).all()
    elif gso == "lambda_max":
        assert abs(np.abs(np.linalg.eigvals(s.numpy())).max() - 1.0) < 1e-5
        assert (s.diagonal() == 0).all() if family == "star" else (s.diagonal() > 0).all()
    else:  # metropolis, max_degree, laplacian: symmetric, rows (and so columns) sum to 1
        assert torch.allclose(s, s.T, atol=1e-7) and torch.allclose(s @ ones, ones, atol=1e-6)
        if gso != "laplacian":
            assert (s >= 0).all()
    # sparsity follows the graph: no entry between non-neighbours
    adjacency = torch.as_tensor(nx.to_numpy_array(graph, nodelist=range(16))) + torch.eye(16, dtype=torch.float64)
    assert (s[adjacency == 0] == 0).all()


def test_star_lambda_max_is_a_over_sqrt_n_minus_1():
    s = shift_operator(build_graph("star", 10, {}, rng()), "lambda_max").to_dense()
    assert torch.allclose(s[0, 1:], torch.full((9,), 1 / 3.0)) and s[1:, 1:].abs().max() == 0


def test_laplacian_alpha_and_isolated_nodes():
    graph = nx.path_graph(3)
    s = shift_operator(graph, "laplacian", laplacian_alpha=0.25).to_dense()
    assert torch.allclose(s[1], torch.tensor([0.25, 0.5, 0.25]))
    graph.add_node(3)  # isolated: every GSO keeps it finite (it just keeps its own value)
    for gso in GSOS:
        s = shift_operator(graph, gso).to_dense()
        assert torch.isfinite(s).all() and s[3, 3] > 0 and s[3, :3].abs().max() == 0


def test_spectral_summary():
    complete = build_topology(TopologyConfig(name="complete", gso="metropolis"), 10, seed=0).spectral()
    assert abs(complete["spectral_gap"] - 1.0) < 1e-6 and abs(complete["lambda_max"] - 1.0) < 1e-6
    assert complete["num_edges"] == 45 and complete["mean_degree"] == complete["max_degree"] == 9
    ring = build_topology(TopologyConfig(name="ring"), 100, seed=0).spectral()
    assert 0 < ring["spectral_gap"] < 0.01 and abs(ring["lambda_max"] - 1.0) < 1e-5


def test_topology_dense_and_to():
    topo = build_topology(TopologyConfig(), 12, seed=0)
    assert isinstance(topo, Topology) and topo.name == "regular3_paper" and topo.gso == "row_normalized"
    moved = topo.to("cpu")
    assert moved.graph is topo.graph and torch.equal(moved.dense(), topo.dense())
    w = torch.randn(12, 5)
    assert torch.allclose(topo.shift @ w, topo.dense() @ w, atol=1e-6)


def test_disconnected_graph_is_an_error_unless_allowed():
    cfg = TopologyConfig(name="erdos_renyi", params={"p": 0.01, "connected": False})
    with pytest.raises(TopologyError, match=r"graph 'erdos_renyi' \(N=100\) is disconnected \(\d+ components\)"):
        build_topology(cfg, 100, seed=0)
    cfg.allow_disconnected = True
    topo = build_topology(cfg, 100, seed=0)
    assert not nx.is_connected(topo.graph) and torch.isfinite(topo.dense()).all()
    with pytest.raises(TopologyError, match="disconnected"):  # connected=true gives up after 100 draws
        build_topology(TopologyConfig(name="erdos_renyi", params={"p": 0.001, "connected": True}), 100, seed=0)


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_resample_per_task_is_keyed_by_task(family):
    params = DENSE_ER.get(family, {})
    cfg = TopologyConfig(name=family, params=params, resample_per_task=True)

    def graph(key):
        return edges(build_topology(cfg, 16, seed=3, task_key=key).graph)

    assert graph(("train", 0)) == graph(("train", 0))
    assert graph(("train", 0)) != graph(("train", 1))
    fixed = TopologyConfig(name=family, params=params)
    assert edges(build_topology(fixed, 16, 3, ("train", 0)).graph) == edges(build_topology(fixed, 16, 3).graph)


def test_specs_resolve_and_are_listed():
    listing = list_topologies()
    assert set(FAMILIES) <= set(listing) and "example_ring12" in listing and "erdos_renyi_paper" in listing
    assert all(isinstance(text, str) and text for text in listing.values())
    star = build_topology(TopologyConfig(name="star"), 10, seed=0)
    assert star.gso == "lambda_max"  # the spec's gso
    assert build_topology(TopologyConfig(name="star", gso="metropolis"), 10, seed=0).gso == "metropolis"
    er = build_topology(TopologyConfig(name="erdos_renyi", params={"p": 0.5}), 12, seed=0)
    assert nx.is_connected(er.graph)  # spec's connected=true kept, its p overridden


def test_edge_list_spec_with_weights():
    topo = build_topology(TopologyConfig(name="example_ring12"), 12, seed=0)
    assert topo.graph.number_of_edges() == 14 and topo.gso == "metropolis"
    assert topo.graph[0][6]["weight"] == 2.0 and topo.graph[0][1]["weight"] == 1.0
    s = topo.dense()
    assert torch.allclose(s, s.T) and torch.allclose(s.sum(1), torch.ones(12))
    assert s[0, 6] == pytest.approx(2.0 / (1 + 4.0))  # weighted degree of node 0: 1 + 1 + 2
    with pytest.raises(ConfigError, match="num_agents=16"):
        build_topology(TopologyConfig(name="example_ring12"), 16, seed=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 1\n1 x\n", r"bad\.edges:2: expected 'u v \[weight\]'"),
        ("0 1\n1 2 -1\n", r"bad\.edges:2: expected"),
        ("0 1 # ok\n\n1 7\n", r"bad\.edges:3: node id 7 >= num_agents=3"),
        ("0 1\n", r"bad\.edges: the edge list has 2 nodes"),
        ("# no edges yet\n\n", r"bad\.edges: the edge list has no edges"),  # said "0 nodes (ids 0..-1)"
    ],
)
def test_malformed_edge_list(tmp_path, text, message):
    path = tmp_path / "bad.edges"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_graph("edge_list", 3, {"path": str(path)}, rng())


def test_edge_list_absolute_path_and_missing_file(tmp_path):
    path = tmp_path / "triangle.edges"
    path.write_text("# triangle\n0 1\n1 2 3.5\n2 0\n")
    graph = build_graph("edge_list", 3, {"path": str(path)}, rng())
    assert graph.number_of_edges() == 3 and graph[1][2]["weight"] == 3.5
    with pytest.raises(ConfigError, match="not found"):
        build_graph("edge_list", 3, {"path": str(tmp_path / "nope.edges")}, rng())
    with pytest.raises(ConfigError, match="needs params.path"):
        build_graph("edge_list", 3, {}, rng())


def test_unknown_names_and_bad_params():
    with pytest.raises(ConfigError, match=r"unknown topology 'rnig' \(see `surf list`; did you mean 'ring'"):
        build_topology(TopologyConfig(name="rnig"), 12, seed=0)
    with pytest.raises(ConfigError, match=r"no parameter 'q' \(valid: p, connected\)"):
        build_graph("erdos_renyi", 12, {"q": 0.1}, rng())
    with pytest.raises(ConfigError, match=r"valid: none"):
        build_graph("ring", 12, {"k": 2}, rng())
    with pytest.raises(ConfigError, match="topology.params.p"):
        build_graph("erdos_renyi", 12, {"p": "high"}, rng())
    with pytest.raises(ConfigError, match="must be in"):
        build_graph("erdos_renyi", 12, {"p": 1.5}, rng())
    with pytest.raises(ConfigError, match="must be even"):
        build_graph("random_regular", 11, {"degree": 3}, rng())
    with pytest.raises(ConfigError, match="rows\\*params.cols must equal num_agents=12"):
        build_graph("grid", 12, {"rows": 5}, rng())
    with pytest.raises(ConfigError, match="unknown gso 'ones'"):
        shift_operator(nx.path_graph(3), "ones")
