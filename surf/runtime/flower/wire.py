"""How SURF's values travel in Flower records (relay and ClientApp both read and write them through this module).

* a tensor is an ``Array`` of its raw bytes (stype :data:`RAW`: no numpy header to write and parse);
* many tensors (a node's state, the broadcast parameters) are ONE packed ``Array``: one Flower object to copy;
* per-agent values of a round (agent ids, per-task flags) are single ``bytes`` entries of a ``ConfigRecord``
  (little-endian int32 ids, one byte per flag): Flower checks a list-valued entry element by element (at 1,000
  agents that was 188,260 ``__setitem__`` checks per 20 rounds), a ``bytes`` entry once;
* a round's rows between two nodes are one contiguous block: a node's reply holds one block per destination node,
  a hop message one block per source node, each with its agents (:func:`outbox_records`, :func:`inbox`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from surf.runtime.flower.node import Inbox, Outbox

RAW = "surf.raw"  # stype of an Array holding a tensor's bytes as they are
ID = np.dtype("<i4")  # agent and node ids on the wire


_DTYPE_NAMES: dict[np.dtype, str] = {}


def dtype_name(dtype: np.dtype) -> str:
    """``str(dtype)``, cached: numpy builds the name anew on every call (0.2 ms of a node's 5 ms hop call went to
    it at 1,000 agents, BENCHMARKS.md)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def to_array(value: torch.Tensor) -> Any:
    """A tensor -> Flower ``Array`` of its raw bytes."""
    from flwr.app import Array

    raw = value.detach().cpu().contiguous().numpy()
    return Array(dtype=dtype_name(raw.dtype), shape=tuple(raw.shape), stype=RAW, data=raw.tobytes())


def from_array(array: Any) -> torch.Tensor:
    """Inverse of :func:`to_array` (any other Array through numpy)."""
    if array.stype != RAW:
        return torch.from_numpy(array.numpy().copy())
    return torch.from_numpy(np.frombuffer(array.data, dtype=np.dtype(array.dtype)).copy()).reshape(array.shape)


def to_record(tensors: dict[str, torch.Tensor]) -> Any:
    """Tensors -> Flower ArrayRecord (one Array per entry)."""
    from flwr.app import ArrayRecord

    return ArrayRecord({key: to_array(value) for key, value in tensors.items()})


def from_record(record: Any) -> dict[str, torch.Tensor]:
    """Flower ArrayRecord -> tensors."""
    return {key: from_array(array) for key, array in record.items()}


def pack(tensors: dict[str, torch.Tensor]) -> bytes:
    """Many tensors as one byte string: an 8-byte header length, a JSON layout, the raw bytes (one copy each)."""
    layout, chunks, offset = {}, [], 0
    for key, value in tensors.items():
        raw = value.detach().cpu().contiguous().numpy()
        layout[key] = [dtype_name(raw.dtype), list(raw.shape), offset, raw.nbytes]
        chunks.append(raw.tobytes())
        offset += raw.nbytes
    header = json.dumps(layout).encode()
    return len(header).to_bytes(8, "little") + header + b"".join(chunks)


def unpack(data: bytes) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack`."""
    size = int.from_bytes(data[:8], "little")
    tensors, start = {}, 8 + size
    for key, (dtype, shape, offset, nbytes) in json.loads(data[8:start]).items():
        kind = np.dtype(dtype)
        values = np.frombuffer(data, dtype=kind, count=nbytes // kind.itemsize, offset=start + offset)
        tensors[key] = torch.from_numpy(values.copy()).reshape(shape)
    return tensors


def packed_record(tensors: dict[str, torch.Tensor]) -> Any:
    """Tensors -> an ArrayRecord holding ONE Array (:func:`pack`)."""
    from flwr.app import Array, ArrayRecord

    data = pack(tensors)
    return ArrayRecord({"packed": Array(dtype="uint8", shape=(len(data),), stype=RAW, data=data)})


def ids_to_bytes(ids: Any) -> bytes:
    """Agent or node ids (a list, numpy array or tensor) -> bytes."""
    return np.asarray(ids, dtype=ID).tobytes()


def ids_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`ids_to_bytes` (a read-only int32 array)."""
    return np.frombuffer(data, dtype=ID)


def flags_to_bytes(mask: torch.Tensor | np.ndarray | None) -> bytes:
    """A bool mask (rows, T) -> one byte per flag; None (no mask) -> ``b""``."""
    return b"" if mask is None else np.ascontiguousarray(mask, dtype=np.uint8).tobytes()


def flags_from_bytes(data: bytes, rows: int) -> torch.Tensor | None:
    """Inverse of :func:`flags_to_bytes`: a (rows, T) bool tensor, None for ``b""``."""
    if not data:
        return None
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).astype(bool)).view(rows, -1)


def outbox_records(outbox: Outbox) -> tuple[Any, Any]:
    """A node's reply: ONE Array with a contiguous block of rows per destination node (raw, flat), and the layout:
    the destinations in order, the number of agents in each block and the agents of all blocks (ids as bytes).
    The relay moves the blocks to their destinations without reading them."""
    from flwr.app import ArrayRecord, ConfigRecord

    layout = ConfigRecord({"order": ids_to_bytes(outbox.order), "counts": ids_to_bytes(outbox.counts),
                           "agents": ids_to_bytes(outbox.agents)})
    return ArrayRecord({"rows": to_array(outbox.rows.reshape(-1))}), layout


def outbox_blocks(content: Any) -> tuple[list[tuple[int, memoryview, np.ndarray]], str, int]:
    """The relay's side of :func:`outbox_records`: the reply cut into (destination, bytes of its block, its agents),
    the rows' dtype and the reply's bytes."""
    layout, array = content["layout"], content["outbox"]["rows"]
    order, counts, agents = (ids_from_bytes(layout[key]) for key in ("order", "counts", "agents"))
    row_bytes = len(array.data) // max(len(agents), 1)
    data, ends = memoryview(array.data), np.cumsum(counts).tolist()
    starts = [0, *ends][:-1]
    blocks = [(int(dst), data[lo * row_bytes: hi * row_bytes], agents[lo:hi])
              for dst, lo, hi in zip(order.tolist(), starts, ends, strict=True)]
    return blocks, array.dtype, len(array.data)


def inbox_records(blocks: list[tuple[int, Any, np.ndarray]], dtype: str, present: np.ndarray | None) -> tuple[Any, Any]:
    """A hop message's inbox: ONE Array joining the blocks of its source nodes (src, bytes, agents) and the senders:
    their agents (ids) and for which tasks each counts (flags; ``b""`` = every task)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord

    data = b"".join(block for _, block, _ in blocks)
    agents = np.concatenate([agents for _, _, agents in blocks]) if blocks else np.zeros(0, dtype=ID)
    inbox = ArrayRecord({"rows": Array(dtype=dtype, shape=(len(data) // np.dtype(dtype).itemsize,), stype=RAW,
                                       data=data)})
    senders = ConfigRecord({"agents": ids_to_bytes(agents),
                            "present": flags_to_bytes(present[agents] if present is not None else None)})
    return inbox, senders


def inbox(content: Any, row_shape: tuple[int, ...]) -> Inbox:
    """The node's side of :func:`inbox_records`: the agents heard from, their rows (A, T, ...) and presence (A, T)."""
    senders = content["senders"]
    agents = torch.from_numpy(ids_from_bytes(senders["agents"]).astype(np.int64))
    rows = from_array(content["inbox"]["rows"]).view(len(agents), *row_shape)
    present = flags_from_bytes(senders["present"], len(agents))
    return agents, rows, present if present is not None else torch.ones(len(agents), row_shape[0], dtype=torch.bool)
