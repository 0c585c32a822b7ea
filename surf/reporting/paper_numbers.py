"""The SURF paper's reported numbers, for ``surf report``'s side-by-side columns.

Source: Hadou, NaderiAlizadeh, Ribeiro, SURF (CPAL 2026 version). The paper has no tables: every value here is a
reading of its figures (about +-1 point; ``≈`` in the report), collected in the project's reference notes
(papers.md, section A.8). Setting: 100 agents, 10 layers, 30 test tasks, CIFAR-10 ResNet features, except that the
Fig. 1 caption says the tasks were sampled from MNIST, and Figs. 1 and 4 reach ~96 % where Figs. 2-3 end at ~84 %,
so Figs. 1 and 4 may come from an MNIST run. Fig. 1 losses are on the authors' code scale (cross-entropy / 15).
The paper's DGD baselines used untuned step sizes (see the reference notes); ours are tuned on validation tasks.
Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

SOURCE = ("SURF paper (CPAL 2026) figures, values read off the plots (≈, ±1 pt); "
          "Figs. 1/4 possibly MNIST, Figs. 2/3/5 CIFAR-10 features")

FIG1 = {  # per layer l = 0..10, 3-regular graph
    "surf": {"accuracy": [0.10, 0.105, 0.16, 0.26, 0.34, 0.44, 0.44, 0.65, 0.92, 0.95, 0.965],
             "loss_code_scale": [2.8, 0.55, 0.33, 0.29, 0.37, 0.25, 0.85, 0.13, 0.07, 0.02, 0.0075]},
    "unrolling": {"accuracy": [0.10, 0.10, 0.095, 0.09, 0.14, 0.40, 0.475, 0.05, 0.0, 0.0, 0.965],
                  "loss_code_scale": [2.8, 1.5, 0.9, 0.41, 0.35, 0.25, 0.28, 0.75, 1.75, 2.5, 0.0075]},
}

FIG2 = {  # final accuracy; U-DGD at 20 rounds, baselines at 200 rounds (keys: our baseline names)
    "regular3_paper": {"surf": 0.84, "dgd": 0.72, "dsgd": 0.715, "dfedavgm": 0.78},
    "erdos_renyi_paper": {"surf": 0.84, "dgd": 0.76, "dsgd": 0.755, "dfedavgm": 0.80},
}

FIG2_STAR = {  # accuracy relative to centralized training, by communication round
    "surf": {0: 0.11, 1: 0.21, 2: 0.22, 3: 0.37, 4: 0.37, 5: 0.45, 6: 0.53, 7: 0.855, 8: 0.89, 9: 0.95, 10: 0.96},
    "fedavg": {0: 0.18, 5: 0.55, 10: 0.69, 25: 0.82},  # FedAvg / SCAFFOLD / FedProx overlap in the figure
    "moon": {0: 0.18, 10: 0.65, 25: 0.80},
    "feddyn": {0: 0.18, 10: 0.70, 25: 0.84},
}

FIG3 = {  # Dirichlet alpha -> final accuracy; U-DGD not retrained, 20 rounds; baselines 200 rounds
    1.0: {"surf": 0.86, "dgd": 0.725, "dsgd": 0.725, "dfedavgm": 0.805},
    0.7: {"surf": 0.845, "dgd": 0.705, "dsgd": 0.72, "dfedavgm": 0.785},
    0.3: {"surf": 0.765, "dgd": 0.605, "dsgd": 0.61, "dfedavgm": 0.69},
}

FIG4 = {  # n_async (of 100 agents) -> final accuracy (the code: one task, 100 draws)
    "surf": [0.962, 0.960, 0.960, 0.956, 0.947, 0.949, 0.938, 0.934, 0.897, 0.889, 0.875],
    "unrolling": [0.962, 0.951, 0.940, 0.924, 0.912, 0.893, 0.879, 0.862, 0.844, 0.823, 0.799],
}

FIG5 = {  # epsilon -> accuracy per layer l = 0..5 (5-layer model, Dirichlet alpha = 0.3)
    0.001: [0.10, 0.115, 0.125, 0.135, 0.13, 0.75],
    0.01: [0.10, 0.145, 0.185, 0.19, 0.245, 0.75],
    0.05: [0.10, 0.235, 0.245, 0.34, 0.35, 0.75],
    0.1: [0.10, 0.24, 0.255, 0.395, 0.475, 0.755],
    0.5: [0.10, 0.195, 0.16, 0.33, 0.375, 0.75],
}
