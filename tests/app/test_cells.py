"""A sweep cell on disk is finished (summary written last) or run again (its lock: tests/utils/test_locks.py)."""

from __future__ import annotations

import pytest

from surf.app.cells import cell_state, run_cell
from surf.app.registry import config_from_dict
from surf.training.rundir import RunDir
from surf.utils.locks import lock_path
from tests.app.test_sweep import TINY


def test_summary_is_written_last_and_an_unfinished_cell_is_rerun(tmp_path, monkeypatch):
    """A process killed while plotting leaves no summary: the cell is not taken for finished, and runs again."""
    cfg = config_from_dict(TINY)
    cell = tmp_path / "store" / "cell"
    write_summary = RunDir.write_summary

    def killed_while_plotting(self, summary):
        assert any(self.plots.iterdir())  # every plot is on disk before the summary
        raise KeyboardInterrupt  # stands for the kill just before the summary

    monkeypatch.setattr(RunDir, "write_summary", killed_while_plotting)
    with pytest.raises(KeyboardInterrupt):
        run_cell(cfg, cell)
    assert cell_state(cell, trained=True) == "resume" and not lock_path(cell).exists()
    monkeypatch.setattr(RunDir, "write_summary", write_summary)
    assert run_cell(cfg, cell) == "resume"
    assert cell_state(cell, trained=True) == "finished"
    assert run_cell(cfg, cell) == "finished"
