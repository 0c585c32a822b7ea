"""What travels in the Flower records: ids and flags as single bytes entries, blocks of rows routed by byte range."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import RecordDict

from surf.runtime.flower.node import Outbox, Shard, ShardSpec
from surf.runtime.flower.wire import (
    dtype_name,
    flags_from_bytes,
    flags_to_bytes,
    ids_from_bytes,
    ids_to_bytes,
    inbox,
    inbox_records,
    outbox_blocks,
    outbox_records,
    pack,
    unpack,
)

ROW = (2, 3, 4)  # (T, d+1, C)


def test_ids_and_flags_round_trip():
    assert ids_from_bytes(ids_to_bytes([3, 0, 2**31 - 1])).tolist() == [3, 0, 2**31 - 1]
    assert ids_from_bytes(ids_to_bytes([])).tolist() == []
    mask = torch.tensor([[True, False], [False, False], [True, True]])
    assert torch.equal(flags_from_bytes(flags_to_bytes(mask), 3), mask)
    assert flags_to_bytes(None) == b"" and flags_from_bytes(b"", 3) is None


def test_pack_round_trip():
    tensors = {"w": torch.randn(3, 2, 5), "recorded": torch.tensor(4), "mask": torch.tensor([True, False])}
    back = unpack(pack(tensors))
    assert all(torch.equal(back[key], value) for key, value in tensors.items())
    assert [dtype_name(np.dtype(kind)) for kind in ("float32", ">f8", "bool")] == ["float32", ">f8", "bool"]


def test_a_process_builds_one_surf_model_per_job_for_all_its_shards():
    """Every shard of one job shares the model its packed parameters describe; another job gets its own."""
    from surf.app.registry import load_config
    from surf.models.udgd import UnrolledDGD
    from surf.runtime.flower.client import _rule
    from tests.conftest import QUICKSTART, TINY

    cfg = load_config(QUICKSTART, TINY)
    spec = SimpleNamespace(method="surf", config_yaml="job-config")
    tasks = [SimpleNamespace(x_train=torch.zeros(2, 3, 65), num_classes=10)]
    model = UnrolledDGD(cfg.model, 65, 10, cfg.data.batch_size)
    theta = pack(model.state_dict())
    first, second = _rule(spec, cfg, tasks, theta), _rule(spec, cfg, tasks, bytes(theta))
    assert first is second
    built, original = first.model.state_dict(), model.state_dict()
    assert all(torch.equal(built[key], original[key]) for key in original)
    with torch.no_grad():
        model.taps.add_(1.0)
    assert _rule(spec, cfg, tasks, pack(model.state_dict())) is not first


def test_blocks_travel_from_outbox_to_inbox_unchanged():
    """Two nodes reply blocks for node 2; the relay joins them by byte range; node 2 gets every row, its agent and
    its presence flags, and no ConfigRecord entry is a list (Flower checks lists element by element)."""
    rows = {agent: torch.full(ROW, float(agent)) for agent in range(8)}
    outboxes = [Outbox([2, 5], [2, 1], torch.tensor([1, 3, 0]), torch.stack([rows[1], rows[3], rows[0]])),
                Outbox([2], [1], torch.tensor([6]), rows[6][None])]
    routed = []
    for outbox in outboxes:
        array, layout = outbox_records(outbox)
        assert all(isinstance(value, bytes) for value in layout.values())
        blocks, dtype, size = outbox_blocks(RecordDict({"outbox": array, "layout": layout}))
        assert size == outbox.rows.numel() * 4 and [dst for dst, _, _ in blocks] == outbox.order
        routed += [(dst, block, agents) for dst, block, agents in blocks if dst == 2]
    present = np.zeros((8, 2), dtype=bool)
    present[3], present[6, 1] = True, True
    records, senders = inbox_records(routed, dtype, present)
    assert all(isinstance(value, bytes) for value in senders.values())
    agents, received, flags = inbox(RecordDict({"inbox": records, "senders": senders}), ROW)
    assert agents.tolist() == [1, 3, 6]
    assert torch.equal(received, torch.stack([rows[1], rows[3], rows[6]]))
    assert flags.tolist() == [[False, False], [True, True], [False, True]]
    _, _, everyone = inbox(RecordDict({"inbox": records, "senders": inbox_records(routed, dtype, None)[1]}), ROW)
    assert everyone.all() and everyone.shape == (3, 2)


class Rule:
    steps = 1


def test_node_places_senders_by_agent_and_refuses_strangers():
    spec = ShardSpec("job", "", "dgd", [], agents=[4, 5], columns=[4, 5, 9, 1, 7])
    shard = Shard(spec, torch.zeros(2, 5), Rule(), [], seed=0, w0_std=0.1)
    assert shard.positions(torch.tensor([7, 9, 1])).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="does not hear from"):
        shard.positions(torch.tensor([9, 3]))


def test_node_packs_one_block_per_destination_without_quiet_agents():
    spec = ShardSpec("job", "", "dgd", [], agents=[4, 5, 6], columns=[4, 5, 6, 0], routes={"3": [6, 4], "1": [5]})
    shard = Shard(spec, torch.zeros(3, 4), Rule(), [], seed=0, w0_std=0.1)
    values = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 1, 1)
    outbox = shard.pack(values, None)
    assert (outbox.order, outbox.counts, outbox.agents.tolist()) == ([3, 1], [2, 1], [6, 4, 5])
    assert outbox.rows[:, 0].flatten().tolist() == [2.0, 0.0, 1.0]
    quiet = torch.tensor([[True, False], [True, True], [True, True]])  # agent 4 still counts in task 1
    outbox = shard.pack(values, quiet)
    assert (outbox.order, outbox.counts, outbox.agents.tolist()) == ([3], [1], [4])
