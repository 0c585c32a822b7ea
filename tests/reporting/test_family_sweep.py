"""``surf report`` of a LISTA sweep: the family's own metrics over seeds and paired against its baselines (it was a
KeyError on 'accuracy': the report knew only the classifier)."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml

from surf.app.cli import main
from surf.app.sweep_run import run_sweep
from surf.reporting.figures import pm, signed
from surf.reporting.sweep_data import mean_ci
from tests.families.test_sparse import TINY


@pytest.fixture(scope="module")
def lista_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lista_sweep")
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny_lista", "base": {"name": "tiny_lista", **TINY}, "seeds": [0, 1],
                                    "matrix": {"constraints.epsilon": [0.05]}}))
    assert run_sweep(path, tmp / "out", tmp / "store", progress=False) == 0
    return tmp / "out"


def _summaries(out):
    index = json.loads((out / "sweep.json").read_text())
    return [json.loads((out / cell["name"] / "summary.json").read_text()) for cell in index["cells"]]


def test_report_of_a_lista_sweep_gives_its_metrics_and_paired_baselines(lista_sweep, capsys):
    assert main(["report", str(lista_sweep)]) == 0
    text = (lista_sweep / "report.md").read_text()
    summaries = _summaries(lista_sweep)
    assert len(summaries) == 2 and {s["family"] for s in summaries} == {"sparse_coding"}
    row = next(line for line in text.splitlines() if line.startswith("| constraints.epsilon-0.05 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    nmse = mean_ci([s["final"]["nmse_db"] for s in summaries])
    assert cells[2] == summaries[0]["method"] and cells[4] == "2" and cells[5] == pm(nmse)
    share = statistics.fmean(s["descent"]["objective_nonincrease_fraction"] for s in summaries)
    assert cells[7] == f"{100 * share:.1f}"
    names = list(summaries[0]["comparisons"])
    assert names == ["standard_lista", "ista", "fista"]
    for name, cell in zip(names, cells[8:], strict=True):  # lower NMSE is better: better by = baseline - model
        better = mean_ci([s["comparisons"][name]["final"]["nmse_db"] - s["final"]["nmse_db"] for s in summaries])
        assert cell.endswith(f"better by {signed(better)}")
    assert "(lower is better)" in text and "relabelled" not in text  # no classifier protocol text
    assert (lista_sweep / "plots" / "per_layer.png").stat().st_size > 1000


def test_a_sweep_mixing_families_is_an_error(lista_sweep, tiny_run, tmp_path, capsys):
    index = json.loads((lista_sweep / "sweep.json").read_text())
    index["cells"].append({"name": "classifier", "overrides": {}, "path": str(tiny_run), "evals": []})
    (tmp_path / "sweep.json").write_text(json.dumps(index))
    assert main(["report", str(tmp_path)]) == 2
    assert "mixes the families ['decentralized', 'sparse_coding']" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]  # nothing written
