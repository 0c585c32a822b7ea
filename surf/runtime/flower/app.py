"""Module-level Flower components for a real deployment (SuperLink + SuperNodes, ``flwr run``).

``clientapp`` is the ClientApp the simulation runs (a SuperNode's node config ``data="node_<s>.npz"`` points it at
its data file); ``serverapp`` runs ``surf deploy``'s jobs through the relay with the app's run config
(``surf.runtime.flower.deployment.RUN_CONFIG``) and writes the summary to its status folder. ``surf deploy --runtime
flower-deployment`` builds such an app and runs it on a local SuperLink; docs/flower.md shows how to run it across
machines.
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp import ServerApp

from surf.runtime.flower.client import client_app

clientapp = client_app()
serverapp = ServerApp()


@serverapp.main()
def main(grid: Any, context: Any) -> None:
    """Deploy a trained run on the SuperNodes connected to this SuperLink."""
    from surf.runtime.flower.deployment import main as deploy_main

    deploy_main(grid, context)
