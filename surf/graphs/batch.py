"""Several graphs unrolled together as one: their GSOs as one block-diagonal GSO (PyG's ``Batch`` convention:
graph t's nodes follow graph t-1's), and their per-step network conditions side by side. This is how a
:class:`~surf.data.tasks.TaskBatch` of T tasks (per-task or time-varying graphs included) runs as one problem."""

from __future__ import annotations

import torch

from surf.graphs.gso import to_csr
from surf.graphs.network import Schedule, StepConditions


def block_diagonal(shifts: list[torch.Tensor]) -> torch.Tensor:
    """The GSOs ``shifts`` (sparse CSR, rows = receivers) as one block-diagonal CSR GSO, built with PyG's
    ``Batch.from_data_list`` (edge indices offset by the preceding graphs' node counts)."""
    from torch_geometric.data import Batch, Data

    graphs = []
    for shift in shifts:
        coo = shift.to_sparse_coo().coalesce()
        receivers, senders = coo.indices()
        graphs.append(Data(edge_index=torch.stack([senders, receivers]), edge_weight=coo.values(),
                           num_nodes=shift.shape[0]))
    batch = Batch.from_data_list(graphs)
    senders, receivers = batch.edge_index
    return to_csr(torch.stack([receivers, senders]), batch.edge_weight, batch.num_nodes).to(shifts[0].device)


def concat_schedules(schedules: list[Schedule | None], shifts: list[torch.Tensor]) -> Schedule | None:
    """One schedule for graphs side by side: each step's active agents, delays and GSOs (block-diagonal, a
    graph's own S where its schedule keeps it) concatenated in the order of ``shifts``; None when none has one."""
    if all(schedule is None for schedule in schedules):
        return None
    sizes = [shift.shape[0] for shift in shifts]

    def at(t: int) -> StepConditions:
        steps = [schedule(t) if schedule is not None else StepConditions() for schedule in schedules]
        active = delay = shift = None
        if any(s.active is not None for s in steps):
            active = torch.cat([s.active if s.active is not None else torch.ones(n, dtype=torch.bool)
                                for s, n in zip(steps, sizes, strict=True)])
        if any(s.delay is not None for s in steps):
            delay = torch.cat([s.delay if s.delay is not None else torch.zeros(n, dtype=torch.int64)
                               for s, n in zip(steps, sizes, strict=True)])
        if any(s.shift is not None for s in steps):
            shift = block_diagonal([s.shift if s.shift is not None else base
                                    for s, base in zip(steps, shifts, strict=True)])
        return StepConditions(active=active, shift=shift, delay=delay)

    return at
