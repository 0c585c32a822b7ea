"""Meta-training: the one primal-dual loop of Algorithm 1 (``trainer``), family-agnostic and shared by every
runtime, and the run directory it writes (``rundir``: resolved config, metrics stream, checkpoints, summary)."""
