"""Every runbook notebook is a thin, readable page: the shape DESIGN.md asks for, checked statically."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from runbook_lib.batch import STEPS
from runbook_lib.secrets import scan_bytes

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist_for_steps_in_order():
    names = [p.stem for p in NOTEBOOKS]
    assert names == [s for s in STEPS if s in names]
    assert names[:4] == list(STEPS[:4])


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def nb(request):
    return nbformat.read(request.param, as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_starts_by_quoting_the_guide(nb):
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Upgrading From Terraform Enterprise (Legacy)" in first.source


def test_one_parameters_cell_with_harmless_defaults(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), "the parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values["mode"] == "plan"
    assert values["legacy_token_var"] == "ATLAS_TOKEN" and values["tfe_token_var"] == "TFE_TOKEN"
    assert values["confirm"] == "" and values["interactive"] is True
    assert not scan_bytes(tagged[0].source.encode(), "parameters")


def test_defines_nothing_and_imports_only_the_runbook(nb):
    for cell in _code(nb):
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), cell.source
            if isinstance(node, ast.ImportFrom):
                assert node.module.startswith("runbook_lib"), node.module
            assert not isinstance(node, ast.Import), "notebooks import from runbook_lib only"


def test_ends_with_the_verdict(nb):
    assert "conclude(" in _code(nb)[-1].source


def test_committed_clean(nb):
    for cell in _code(nb):
        assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_an_id(path):
    # nbformat 4.5 requires them (a missing one is a warning today, "a hard error in future nbformat versions")
    import json

    cells = json.loads(path.read_text())["cells"]
    assert all(cell.get("id") for cell in cells) and len({c["id"] for c in cells}) == len(cells)


def test_papermill_reads_every_parameter(nb, tmp_path):
    from runbook_lib.batch import declared_parameters

    tagged = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {node.targets[0].id for node in ast.parse(tagged.source).body}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert declared_parameters(path) == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_option_of_a_step_is_a_parameter_of_its_notebook_and_reaches_its_context(path):
    # An option the notebook does not declare cannot be set from a batch (`--param`) or by the operator,
    # so an error naming it ("set the vcs_http_url parameter") would send them nowhere.
    import dataclasses

    from runbook_lib import catalog

    nb = nbformat.read(path, as_version=4)
    tagged = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    parameters = {node.targets[0].id for node in ast.parse(tagged.source).body}
    options = {f.name for f in dataclasses.fields(catalog.options_of(path.stem))}
    assert options <= parameters, f"options without a parameter: {sorted(options - parameters)}"
    passed = {kw.arg for cell in _code(nb) for node in ast.walk(ast.parse(cell.source))
              if isinstance(node, ast.Call) for kw in node.keywords}
    assert options <= passed, f"parameters not passed on: {sorted(options - passed)}"
