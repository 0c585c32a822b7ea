"""The benchmarks' cases stay valid configs as the shipped quickstart changes: a case that fails to build would
drop out of a benchmark's table (bench_meta_step's paper case did, for three days, when the quickstart gained the
adam feature)."""

import importlib.util
import re

import pytest

from surf.app.registry import load_config
from tests.conftest import QUICKSTART, REPO


def _bench_meta_step():
    spec = importlib.util.spec_from_file_location("bench_meta_step", REPO / "benchmarks" / "bench_meta_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench_meta_step()


@pytest.mark.parametrize("case", sorted(BENCH.CASES))
def test_every_meta_step_case_is_a_valid_config(case):
    cfg = load_config(QUICKSTART, BENCH.CASES[case] + ["trainer.val_tasks=1"])
    variant = "paper" if case == "paper-closed" else "compact"
    assert cfg.model.variant == variant


def test_the_previous_default_has_no_step_features():
    """quickstart-10x2 and the cases built on it measure the previous default (4c20cd5), which had none."""
    assert load_config(QUICKSTART, BENCH.CASES["quickstart-10x2"]).model.features == []


def test_the_gpu_check_runs_existing_cases():
    """benchmarks/gpu_check.sh waits for a lent GPU: a case it names must not have been renamed meanwhile."""
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    cases = re.search(r"--cases (\S+)", script).group(1).split(",")
    assert cases and set(cases) <= set(BENCH.CASES)
