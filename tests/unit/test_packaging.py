"""environment.yml (conda) and pyproject.toml (pip) must install the same set."""

from __future__ import annotations

import re
import tomllib

import pytest

_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")


def _normalise(requirement: str) -> tuple[str, str]:
    match = _NAME.match(requirement.split(";")[0].strip())
    assert match, requirement
    name, spec = match.groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def _conda_and_pip_entries(text: str) -> dict[str, str]:
    """Read the dependencies of environment.yml without a YAML library (its shape is fixed)."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped.startswith("- ") or stripped in ("- pip", "- pip:", "- conda-forge"):
            continue
        value = stripped[2:].strip()
        if value.startswith("-e "):
            continue
        name, spec = _normalise(value)
        if name == "python":
            continue
        entries[name] = spec
    return entries


@pytest.fixture(scope="module")
def pyproject(repo_root):
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


def test_environment_yml_matches_pyproject(repo_root, pyproject):
    project = pyproject["project"]
    wanted = dict(_normalise(r) for r in project["dependencies"])
    for extra in ("sandbox", "test"):
        wanted.update(_normalise(r) for r in project["optional-dependencies"][extra])
    conda = _conda_and_pip_entries((repo_root / "environment.yml").read_text())
    missing = {k: v for k, v in wanted.items() if k not in conda}
    extra = {k: v for k, v in conda.items() if k not in wanted}
    differing = {k: (wanted[k], conda[k]) for k in wanted.keys() & conda.keys() if wanted[k] != conda[k]}
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"
    assert not differing, f"version specs differ (pyproject, environment.yml): {differing}"


def test_required_runtime_dependencies_present(pyproject):
    names = {_normalise(r)[0] for r in pyproject["project"]["dependencies"]}
    for required in ("jupyterlab", "papermill", "ipywidgets", "pandas", "requests", "python-hcl2", "nbval"):
        assert required in names


def test_console_scripts(pyproject):
    scripts = pyproject["project"]["scripts"]
    assert scripts["tfe-runbook"] == "runbook_lib.cli:main"
    assert scripts["tfe-runbook-terraform1"] == "runbook_lib.tf1:main"


def test_detects_disagreement():
    """The comparison itself must notice a changed spec (guards against a test that always passes)."""
    conda = _conda_and_pip_entries("dependencies:\n  - pandas>=1\n  - pip:\n      - pytfe>=1.5\n")
    assert conda == {"pandas": ">=1", "pytfe": ">=1.5"}
    assert _normalise("python_hcl2 >= 7") == ("python-hcl2", ">=7")
