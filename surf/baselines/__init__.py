"""Classical methods SURF is compared with — DGD, heavy-ball DGD, DSGD, DFedAvgM, DIGing, EXTRA, FedAvg, FedProx,
SCAFFOLD and centralized training — one module each, vectorized over agents and over a grid of hyper-parameter
settings, all communicating only through ``surf.graphs.network``. ``registry`` lists them with their tunable
hyper-parameters, default grids, the paper's presets and what each sends per round."""
