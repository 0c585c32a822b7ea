"""Classic decentralized optimizers run on exactly the same tasks, graphs, W_0 and drop schedules as SURF."""
