"""``surf partition RUN --nodes M --out DIR``: cut the meta-test tasks of a run into one data file per node.

Node s gets ``DIR/node_<s>.npz`` (``surf.data.shares``) with its agents' samples of the first T meta-test tasks (and
their relabelling), its rows of S and the fingerprint of what the data depends on (seed, N, data and topology
sections, M), which the relay checks against the run it deploys. Copy each file to its SuperNode's machine and
point the SuperNode's node config at it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from surf.config import to_dict
from surf.data.shares import as_csr, cut_share, share_path, split_agents
from surf.families.classifier.family import ClassifierFamily
from surf.utils.errors import ConfigError
from surf.utils.typed import covering

DATA_KEYS = ("seed", "num_agents", "data", "topology")  # what a node's data depends on (its fingerprint)
READ_KEYS = (*DATA_KEYS, "eval.test_tasks", "threads", "device", "trainer.device")  # all surf partition reads


def check_overrides(keys: list[str]) -> None:
    """A one-line error for an override ``surf partition`` never reads: it would change nothing."""
    for key in keys:
        if covering(key, READ_KEYS) is None:
            raise ConfigError(f"-o {key}: surf partition cuts the data, which depends on {', '.join(DATA_KEYS)} and "
                              "eval.test_tasks only, so the override would change nothing; drop it")


def fingerprint(exp: ClassifierFamily, nodes: int) -> str:
    """What a node's data depends on: the seed, N, the data and topology sections and the split into nodes."""
    raw = to_dict(exp.cfg)
    basis = {key: raw[key] for key in DATA_KEYS} | {"nodes": nodes}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def write_partition(exp: ClassifierFamily, nodes: int, num_tasks: int, out: Path) -> list[Path]:
    """Write ``out/node_<s>.npz`` for every shard; ``out`` must be empty or absent."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; choose another folder")
    keys = [("test", i) for i in range(num_tasks)]
    tasks = [exp.task(split, index).to("cpu") for split, index in keys]
    permutations = [exp.sampler.relabel_permutation(split, index) for split, index in keys]
    csr = as_csr(exp.shift_for(tasks[0]))
    stamp = fingerprint(exp, nodes)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, agents in enumerate(split_agents(exp.cfg.num_agents, nodes)):
        cut_share(tasks, permutations, csr, agents, stamp).save(share_path(out, s))
        paths.append(share_path(out, s))
    return paths
