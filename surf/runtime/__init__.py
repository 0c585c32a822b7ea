"""Runtimes that execute the shared engine on other machinery: real federated clients (``flower/``) and
data-parallel meta-training (``ray_train``)."""
