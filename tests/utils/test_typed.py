"""Typed mappings: unknown keys and wrong types are one-line errors; JSON Schema of nested dataclasses."""

from dataclasses import dataclass, field
from typing import Literal

import jsonschema
import pytest

from surf.utils.errors import ConfigError
from surf.utils.naming import cell_name
from surf.utils.typed import build, json_schema


@dataclass
class Inner:
    rate: float = 0.1
    tags: list[str] = field(default_factory=list)


@dataclass
class Outer:
    name: str
    mode: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)
    table: dict[str, int] = field(default_factory=dict)
    cap: float | None = None


def test_build_coerces_and_nests():
    built = build(Outer, {"name": "x", "inner": {"rate": 1, "tags": ["t"]}, "table": {"k": 3}, "cap": "1e-3"})
    assert built == Outer("x", inner=Inner(1.0, ["t"]), table={"k": 3}, cap=1e-3)
    assert isinstance(built.inner.rate, float)


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "innr": {}}, "unknown key 'innr' (did you mean 'inner'?)"),
    ({"name": "x", "inner": {"rate": "fast"}}, "inner.rate: expected a number"),
    ({"name": "x", "mode": "c"}, "mode: expected one of"),
    ({"name": "x", "table": {"k": 1.5}}, "table.k: expected int"),
    ({"name": "x", "inner": {"tags": "t"}}, "inner.tags: expected a list"),
    ({}, "name"),
    ({"name": True}, "name: expected str"),
])
def test_bad_values_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError) as info:
        build(Outer, raw)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_json_schema_accepts_built_documents_and_rejects_others():
    schema = json_schema(Outer)
    jsonschema.validate({"name": "x", "inner": {"rate": 0.5, "tags": []}, "cap": None}, schema)
    for bad in ({"inner": {}}, {"name": "x", "extra": 1}, {"name": "x", "mode": "z"}, {"name": "x", "cap": "no"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_cell_names_are_stable_and_safe():
    assert cell_name({}) == "base"
    assert cell_name({"constraints.kind": "none", "seed": 1}) == "constraints.kind-none__seed-1"
    assert cell_name({"topology.params": {"p": 0.1}}) == "topology.params-p=0.1"
    long = cell_name({f"k{i}": "v" * 20 for i in range(10)})
    assert len(long) == 120 and long == cell_name({f"k{i}": "v" * 20 for i in range(10)})
