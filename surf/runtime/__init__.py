"""Runtimes that execute a trained model: the vectorized engine (default) and real federated clients (flower/)."""
