"""SURF agents as real federated clients: Flower ClientApps on a graph, with a ServerApp that only relays.

``node``: what a node (a shard of agents) computes; ``client``: the ClientApp around it; ``relay``: the ServerApp
that routes neighbour messages, handles dropped agents and counts communication (``accounting``); ``simulation``:
Flower's simulation engine on Ray; ``deploy``: ``surf deploy RUN_DIR --runtime flower``.
"""
