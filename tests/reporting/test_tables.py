"""Printed tables: byte units, the stress table and the train x test matrix from typed results."""

import dataclasses

from surf.evaluation.summary import MatrixCell, MatrixRow, StressMatrix, StressMethod, StressResult
from surf.reporting.stress import matrix_table, read_stress, stress_table, write_stress
from surf.reporting.tables import format_bytes
from tests.conftest import assert_valid


def _result() -> StressResult:
    methods = {"surf": StressMethod("surf", [0.9, 0.8], [0.01, 0.02], [0.0, 0.01], "clean", [0.95, 0.7]),
               "dgd": StressMethod("baseline", [0.7, 0.69], [0.0, 0.01], [0.0, 0.0], hyper={"step": 0.3})}
    return StressResult("fig4_async", "drops", "n_async", [0, 10], 5, 2, "stale", 20, methods, 1.5)


def test_byte_units():
    assert [format_bytes(b) for b in (12, 1500, 15_500_000, 3_200_000_000)] == ["12 B", "1.5 kB", "15.5 MB", "3.2 GB"]


def test_stress_table_and_files_round_trip(tmp_path):
    result = _result()
    table = stress_table(result)
    assert "| n_async | surf | dgd | constraint holds (surf) |" in table
    assert "| 10 | 0.800 ± 0.020 | 0.690 ± 0.010 | 70.0 % |" in table
    plot = write_stress(result, tmp_path)
    assert plot.stat().st_size > 0 and read_stress(tmp_path / "stress.json") == {"fig4_async": result}
    assert_valid(dataclasses.asdict(result), "stress")


def test_matrix_table_names_the_training_scenario():
    matrix = StressMatrix(["clean", "bernoulli"], 2, 1, {
        "robust": MatrixRow("bernoulli@0.3", "surf", {"clean": MatrixCell(0, 0.9, 0.01),
                                                       "bernoulli": MatrixCell(0.1, 0.85, 0.02, 0.9)})})
    table = matrix_table(matrix)
    assert "bernoulli @ 0.1" in table and "| robust (surf) | bernoulli@0.3 | 0.900 ± 0.010 | 0.850 ± 0.020 |" in table
