"""Runtimes that execute the shared engine on other machinery: real federated clients (``flower/``), data-parallel
meta-training (``ray_train``) and independent jobs as Ray tasks — sweep cells, stress chunks (``ray_tasks``) — on a
local Ray instance or a cluster (``ray_cluster``, shared by the Ray runtimes)."""
