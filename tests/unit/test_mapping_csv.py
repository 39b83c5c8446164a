"""The mapping CSV carries no formulas, and the survey writes only names the runbook can read back."""

from __future__ import annotations

import csv
import io

import pytest

from runbook_lib import mapping
from runbook_lib.mapping import MappingRow

FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\",\"y\")"]


@pytest.mark.parametrize("value", FORMULAS + ["'=1", "''+x", "'x", "x'", "", "plain", "a=b", "-", "'", "''"])
def test_every_value_comes_back_and_no_cell_starts_a_formula(value):
    cell = mapping.csv_cell(value)
    assert mapping.csv_value(cell) == value
    assert not cell.startswith(mapping.FORMULA_STARTS)
    if value.startswith(mapping.FORMULA_STARTS):
        assert cell == "'" + value  # OWASP: a leading quote, which a spreadsheet takes for "text"


def test_no_column_of_the_file_starts_a_formula_and_the_file_reads_back(tmp_path):
    # names a legacy host may give that begin like a formula: a leading "-" is a valid name everywhere
    rows = [MappingRow("-legacy", "-web", "-acme", "-web"), MappingRow("acme-legacy", "db", "acme", "db")]
    path = tmp_path / "mapping.csv"
    text = mapping.write_csv(rows, path)
    cells = [cell for line in csv.reader(io.StringIO(text)) for cell in line]
    assert "'-legacy" in cells and "'-web" in cells and "'-acme" in cells
    assert not [c for c in cells if c.startswith(mapping.FORMULA_STARTS)]
    assert mapping.read_csv(path) == rows


def test_names_the_runbook_cannot_use_are_left_out_when_the_survey_writes(tmp_path):
    # ".." is a valid legacy name that a URL would normalise away; "=cmd|..." is no legacy name at all
    rows = mapping.propose("acme-legacy", ["..", "web.prod", "=cmd|' /C calc'!A0", "..."], "acme")
    assert set(mapping.unusable_names(rows)) == {"acme-legacy/..", "acme-legacy/...", "acme-legacy/=cmd|' /C calc'!A0"}
    path = tmp_path / "mapping.csv"
    mapping.write_csv(rows, path)
    assert mapping.read_csv(path) == [MappingRow("acme-legacy", "web.prod", "acme", "web-prod")]
    assert "calc" not in path.read_text()
