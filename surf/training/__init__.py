"""Meta-training: the one primal-dual loop of Algorithm 1 (``trainer``), family-agnostic and shared by every
runtime, a family's optional pretraining stage before it (``pretrain``, e.g. a flow's density fit) and the run
directory it writes (``rundir``: resolved config, metrics stream, checkpoints, summary)."""
