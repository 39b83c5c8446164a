"""Fixtures of the sandbox tier's own tests (the shared ones are in tests/sandbox_fixtures.py)."""

from __future__ import annotations

import pytest
from sandbox_helpers import Api

from runbook_lib.rehearsal import batch_environ, batch_parameters
from runbook_lib.sandbox import Sandbox


@pytest.fixture
def api(seeded_sandbox: Sandbox) -> Api:
    """The operator on the seeded sandbox's new API."""
    return Api(seeded_sandbox)


@pytest.fixture
def legacy(seeded_sandbox: Sandbox) -> Api:
    """The operator on the seeded sandbox's legacy API."""
    return Api(seeded_sandbox, legacy=True)


@pytest.fixture
def rehearsal(sandbox_env, monkeypatch) -> dict[str, str]:  # noqa: ANN001 - pytest's fixtures
    """The seeded sandbox's variables in this test's environment; returns the batch's step parameters."""
    for name, value in batch_environ(sandbox_env).items():
        monkeypatch.setenv(name, value)
    return batch_parameters(sandbox_env)
