"""The decentralized classifier: N agents on a graph, each with softmax regression on its own data, optimized by
U-DGD; its per-layer descent measures (gradient norm CI, distance to the optimum CII)."""
