"""Fixtures for running the runbook's notebooks against a sandbox."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runbook_lib.rehearsal import batch_environ, batch_parameters

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def notebooks_copy(tmp_path) -> Path:
    """A copy of notebooks/ in a temporary folder (kernels write their interactive audit trail beside them)."""
    target = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, target)
    return target


@pytest.fixture
def rehearsal(sandbox_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The seeded sandbox's environment (plus VCS token and git base) in os.environ; returns batch parameters."""
    for name, value in batch_environ(sandbox_env).items():
        monkeypatch.setenv(name, value)
    return batch_parameters(sandbox_env)


