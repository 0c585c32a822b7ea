"""Communication accounting equals hand-computed counts on tiny graphs."""

import torch

from surf.baselines.registry import Settings, communication
from surf.graphs.comm import directed_edges, unrolled_cost

FLOATS = 3 * 2  # (d+1) x C with d = 2, C = 2: 24 bytes per float32 vector


def ring4() -> torch.Tensor:
    adjacency = torch.eye(4)
    for i in range(4):
        adjacency[i, (i + 1) % 4] = adjacency[(i + 1) % 4, i] = 1.0
    return (adjacency / 3).to_sparse_csr()


def test_directed_edges_count_each_undirected_edge_twice_and_skip_self_loops():
    assert directed_edges(ring4()) == 8
    star = torch.zeros(5, 5)
    star[0, 1:] = star[1:, 0] = 0.5
    assert directed_edges(star) == 8


def test_gossip_bytes_by_hand():
    # ring of 4: 8 directed links x 24 bytes = 192 bytes per round; 5 rounds
    dgd = communication("dgd", 5, directed_edges(ring4()), FLOATS, clients=4).as_dict()
    assert dgd == {"rounds": 5, "messages": 40, "bytes": 960, "messages_per_round": 8, "bytes_per_round": 192}
    extra = communication("extra", 5, 8, FLOATS, clients=4).as_dict()
    assert extra["bytes"] == 960
    diging = communication("diging", 5, 8, FLOATS, clients=4).as_dict()  # x and y: two vectors per message
    assert (diging["messages"], diging["bytes_per_round"], diging["bytes"]) == (40, 384, 1920)


def test_unrolled_uses_k_rounds_per_layer():
    cost = unrolled_cost(layers=3, hops=2, edges=8, floats=FLOATS).as_dict()
    assert cost == {"rounds": 6, "messages": 48, "bytes": 1152, "messages_per_round": 8, "bytes_per_round": 192}


def test_server_client_bytes_by_hand():
    # 4 clients, 2 upload per round, the server broadcasts to all 4: 6 messages, 6 x 24 = 144 bytes per round
    settings = Settings(clients_per_round=2)
    fedavg = communication("fedavg", 5, 8, FLOATS, clients=4, settings=settings).as_dict()
    assert fedavg == {"rounds": 5, "messages": 30, "bytes": 720, "messages_per_round": 6, "bytes_per_round": 144}
    scaffold = communication("scaffold", 5, 8, FLOATS, clients=4, settings=settings).as_dict()
    assert (scaffold["messages_per_round"], scaffold["bytes_per_round"]) == (6, 288)  # model + control variate


def test_centralized_sends_nothing():
    cost = communication("centralized", 7, 8, FLOATS, clients=4).as_dict()
    assert cost == {"rounds": 7, "messages": 0, "bytes": 0, "messages_per_round": 0, "bytes_per_round": 0}
