"""Test tiers are folders; each folder's tests get its marker, so `pytest -m unit` runs one tier.

tests/unit       pure functions and fixture files; seconds
tests/terraform  real terraform binaries (0.11.11 and 1.x), no server
tests/sandbox    clients, steps and real terraform/git against a running sandbox
tests/notebooks  notebooks under nbval and papermill against a seeded sandbox
tests/browser    JupyterLab in headless Chromium
tests/conformance  HashiCorp's go-tfe integration tests against a fresh sandbox (../shared harness)
tests/install    `pip install .` into a fresh venv, then the installed CLI against a sandbox; slow
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["sandbox_fixtures"]

TIERS = {"unit", "terraform", "sandbox", "notebooks", "browser", "conformance", "install"}
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regenerate-fixtures", action="store_true", default=False,
                     help="rewrite tests/fixtures from real terraform runs instead of only checking them")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = Path(item.fspath).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return REPO_ROOT / "tests" / "fixtures"
