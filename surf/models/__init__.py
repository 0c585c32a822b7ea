"""The unrolled optimizers: U-DGD (paper eq. 11-13: graph filter + learned local step per layer, ``udgd`` and
``steps``) and LISTA / ALISTA (``lista``). Models compute trajectories; they know nothing of constraints or training."""
