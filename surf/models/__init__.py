"""The unrolled optimizers: U-DGD (paper eq. 11-13: graph filter + learned local step per layer, ``udgd`` and
``steps``), LISTA / ALISTA (``lista``) and GLOW-Prox (``glow_prox``: proximal gradient in per-layer Glow latents), and
the keyed noise hooks on their iterates (``perturbation``). Models compute trajectories; they know nothing of
constraints or training."""
