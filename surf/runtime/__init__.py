"""Runtimes that execute the shared engine on other machinery (``ray_train``: data-parallel meta-training)."""
