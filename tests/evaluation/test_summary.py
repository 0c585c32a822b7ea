"""The typed summary: the published JSON Schemas are the dataclasses', version-1 run directories still read (both
families), distinct descent quantities keep distinct names, and a newer schema is refused in one line."""

import dataclasses
import json
from pathlib import Path

import pytest

from surf.evaluation.summary import SCHEMA_VERSION, SCHEMAS, Descent, Summary, load_summary, upgrade
from surf.utils.errors import ConfigError
from surf.utils.typed import json_schema
from tests.conftest import REPO, assert_valid

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", SCHEMAS)
def test_published_schemas_are_the_dataclasses(name):
    published = json.loads((REPO / "docs" / f"{name}.schema.json").read_text())
    assert published == json_schema(SCHEMAS[name]), "regenerate: python -m surf.evaluation.summary docs"


def test_v1_classifier_summary_is_upgraded():
    raw = json.loads((DATA / "summary_v1_classifier.json").read_text())
    summary = load_summary(DATA / "summary_v1_classifier.json")
    assert isinstance(summary, Summary) and summary.schema_version == SCHEMA_VERSION and summary.kind == "run"
    assert summary.descent.grad_norm_decrease_fraction == raw["descent_fraction"]
    assert summary.descent.constraint_satisfied_fraction is None
    assert summary.final == raw["final"] and summary.layers == len(raw["per_layer"]["accuracy"]) - 1
    for name, entry in raw["baselines"].items():
        assert summary.comparisons[name].final["accuracy"] == entry["accuracy"]
        assert summary.comparisons[name].per_step["accuracy"] == entry["per_round_accuracy"]
        assert summary.comparisons[name].steps == entry["rounds"]
    assert summary.training.duals == raw["training"]["lambda"]
    assert_valid(summary.to_dict())


def test_v1_sparse_summary_is_upgraded():
    raw = json.loads((DATA / "summary_v1_sparse.json").read_text())
    summary = load_summary(DATA / "summary_v1_sparse.json")
    method = raw["method"]
    assert summary.family == "sparse_coding" and summary.method == method and summary.rounds == 0
    assert summary.per_layer["nmse_db"] == raw["per_layer"][method]["nmse_db"]
    assert summary.descent.objective_nonincrease_fraction == raw["per_layer"][method]["objective_descent_fraction"]
    assert set(summary.comparisons) == set(raw["per_layer"]) - {method}
    assert summary.reference["optimum_objective"] == raw["optimum_objective"]
    point = summary.robustness["layers"].methods[method][0]
    assert "objective_nonincrease_fraction" in point and "objective_descent_fraction" not in point
    assert_valid(summary.to_dict())


def test_current_summaries_round_trip_and_newer_ones_are_refused(tmp_path):
    summary = load_summary(DATA / "summary_v1_classifier.json")
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary.to_dict()))
    assert load_summary(path) == summary
    assert upgrade(summary.to_dict()) == summary.to_dict()
    path.write_text(json.dumps({**summary.to_dict(), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ConfigError, match="newer than this SURF"):
        load_summary(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable summary.json"):
        load_summary(path)
    path.write_text(json.dumps({**summary.to_dict(), "final": "high"}))
    with pytest.raises(ConfigError, match="final"):
        load_summary(path)


def test_descent_quantities_have_distinct_names():
    names = [f.name for f in dataclasses.fields(Descent)]
    assert names == ["grad_norm_decrease_fraction", "constraint_satisfied_fraction", "objective_nonincrease_fraction",
                     "distance_nonincrease_fraction", "declared_quantity", "declared_decrease_fraction",
                     "decrease_fractions", "safeguard_fallback_fraction"]
