"""The run-time safeguard end to end: meta-training never uses it (a run with and without it trains the same model,
step for step), the evaluation reports how often it fell back, and it can be switched for any trained run."""

import json

import torch

from surf.app.cli import main
from tests.conftest import assert_valid, run_tiny


def test_safeguard_changes_no_trained_parameter_and_reports_its_fallbacks(tiny_run, tmp_path):
    """tiny_run is the quickstart shrunk, which ships model.safeguard=loss; the same run without it."""
    unguarded = tmp_path / "unguarded"
    assert run_tiny(unguarded, ["model.safeguard=none"]) == 0
    assert (tiny_run / "metrics.jsonl").read_text() == (unguarded / "metrics.jsonl").read_text()
    trained = [torch.load(run / "checkpoints" / "best.pt", weights_only=False)["model"]
               for run in (tiny_run, unguarded)]
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][key], trained[1][key]) for key in trained[0])
    guarded, plain = (assert_valid(run / "summary.json") for run in (tiny_run, unguarded))
    assert 0.0 <= guarded["descent"]["safeguard_fallback_fraction"] <= 1.0
    assert plain["descent"]["safeguard_fallback_fraction"] is None


def test_safeguard_is_switched_for_a_trained_run(tiny_run, tmp_path):
    out = tmp_path / "off"
    assert main(["eval", str(tiny_run), "-o", "model.safeguard=none", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["descent"]["safeguard_fallback_fraction"] is None
