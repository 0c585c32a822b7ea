"""Node-local data: one file per node holding only its agents' share of the meta-test tasks.

``surf partition RUN --nodes M --out DIR`` writes ``DIR/node_<s>.npz`` for shards s = 0..M-1 (agents split into M
contiguous, near-equal blocks by :func:`split_agents`). A file holds, for the node's agents only: their training and
held-out samples of every task, each task's relabelling permutation (the twin is the same samples, relabelled), the
node's rows of S over the columns it hears from (its own agents first, then their outside neighbours) and a
fingerprint of the run and tasks it was cut from. A Flower SuperNode's node config points at its file
(``--node-config 'data="DIR/node_3.npz"'``); the node never builds or loads the full task. Files are plain ``.npz``
(no pickle): a truncated or foreign file is a one-line error naming it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from surf.data.tasks import Task
from surf.utils.errors import DataError

FORMAT = 1
ARRAYS = ("agents", "columns", "rows", "x_train", "y_train", "x_test", "y_test", "permutations")


def split_agents(num_agents: int, num_nodes: int) -> list[list[int]]:
    """Agents 0..N-1 in ``num_nodes`` contiguous blocks whose sizes differ by at most one."""
    return [block.tolist() for block in np.array_split(np.arange(num_agents), num_nodes)]


def as_csr(shift: torch.Tensor) -> torch.Tensor:
    """S as a sparse CSR tensor on the CPU (a dense N x N copy would not fit for large N)."""
    shift = shift.cpu()
    if shift.layout == torch.sparse_csr:
        return shift
    return shift.to_sparse_csr()  # its "beta" notice is silenced in surf/__init__.py


def heard_columns(csr: torch.Tensor, agents: list[int]) -> list[int]:
    """The agents that ``agents`` hear from on the graph ``csr`` (:func:`as_csr`): themselves first, then the
    other nonzero columns of their rows, sorted."""
    crow, col = csr.crow_indices(), csr.col_indices()
    heard = set(torch.cat([col[crow[a]: crow[a + 1]] for a in agents]).tolist())
    return list(agents) + sorted(heard - set(agents))


def shift_rows(csr: torch.Tensor, agents: list[int], columns: list[int]) -> torch.Tensor:
    """The rows of S of ``agents`` over ``columns`` (which hold all their nonzeros), dense (A, len(columns))."""
    crow, col, values = csr.crow_indices(), csr.col_indices(), csr.values()
    where = {c: i for i, c in enumerate(columns)}
    rows = torch.zeros(len(agents), len(columns), dtype=values.dtype)
    for r, a in enumerate(agents):
        span = slice(int(crow[a]), int(crow[a + 1]))
        rows[r, [where[c] for c in col[span].tolist()]] = values[span]
    return rows


def share_path(folder: Path, shard: int) -> Path:
    return Path(folder) / f"node_{shard}.npz"


@dataclass
class Share:
    """One node's share of the tasks (plain tasks; the relabelled twins are built from ``permutations``)."""

    agents: torch.Tensor  # (A,) global ids
    columns: torch.Tensor  # (A + O,) the agents it hears from: its own, then outside neighbours
    rows: torch.Tensor  # (A, A + O) its rows of S over ``columns``
    keys: list[tuple[str, int]]  # task keys, aligned with the arrays below
    x_train: torch.Tensor  # (T, A, m, d+1)
    y_train: torch.Tensor  # (T, A, m)
    x_test: torch.Tensor
    y_test: torch.Tensor
    permutations: torch.Tensor  # (T, C) relabelling of each task's twin
    fingerprint: str  # of the run config, the task keys and the split of agents
    num_agents: int  # N of the whole graph

    def task(self, split: str, index: int, relabel: bool = False) -> Task:
        """The node's share of task ``(split, index)`` (or its relabelled twin)."""
        if (split, index) not in self.keys:
            raise DataError(f"task ({split}, {index}) is not in this node's data file; rerun `surf partition` with "
                            "more --tasks")
        t = self.keys.index((split, index))
        empty = torch.zeros(0, self.x_train.shape[-1])
        task = Task(key=(split, index), x_train=self.x_train[t], y_train=self.y_train[t], x_test=self.x_test[t],
                    y_test=self.y_test[t], num_classes=int(self.permutations.shape[1]), x_pool=empty,
                    y_pool=torch.zeros(0, dtype=torch.int64), agents=self.agents)
        return task.relabelled(self.permutations[t]) if relabel else task

    def save(self, path: Path) -> None:
        meta = {"format": FORMAT, "keys": [list(k) for k in self.keys], "fingerprint": self.fingerprint,
                "num_agents": self.num_agents}
        arrays = {name: getattr(self, name).numpy() for name in ARRAYS}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)

    @staticmethod
    def peek(path: str | Path) -> dict:
        """The metadata of a node data file (fingerprint, task keys, N) without reading its arrays."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"node data file {path} does not exist; write it with `surf partition RUN --nodes M "
                            "--out DIR`")
        try:
            with np.load(path, allow_pickle=False) as data:
                return json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"node data file {path} is truncated or not a SURF partition ({type(exc).__name__}); "
                            "rewrite it with `surf partition`") from None

    @classmethod
    def load(cls, path: str | Path) -> Share:
        """Read a node's data file; anything unreadable is a one-line ``DataError`` naming the file."""
        meta = cls.peek(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: torch.from_numpy(data[name]) for name in ARRAYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"node data file {path} is truncated or not a SURF partition ({type(exc).__name__}); "
                            "rewrite it with `surf partition`") from None
        if meta.get("format") != FORMAT:
            raise DataError(f"node data file {path} has format {meta.get('format')}, expected {FORMAT}; rewrite it "
                            "with `surf partition`")
        return cls(keys=[(split, int(index)) for split, index in meta["keys"]], fingerprint=meta["fingerprint"],
                   num_agents=int(meta["num_agents"]), **arrays)


def cut_share(tasks: list[Task], permutations: list[torch.Tensor], csr: torch.Tensor, agents: list[int],
              fingerprint: str) -> Share:
    """The share of ``agents`` in full ``tasks`` (plain) on the graph ``csr`` (:func:`as_csr`)."""
    columns = heard_columns(csr, agents)
    parts = [task.select(torch.tensor(agents)) for task in tasks]
    stack = {name: torch.stack([getattr(p, name) for p in parts]).contiguous() for name in
             ("x_train", "y_train", "x_test", "y_test")}
    return Share(agents=torch.tensor(agents), columns=torch.tensor(columns), rows=shift_rows(csr, agents, columns),
                 keys=[t.key for t in tasks], permutations=torch.stack(permutations), fingerprint=fingerprint,
                 num_agents=int(csr.shape[0]), **stack)
