"""Fixtures of the sandbox tier's own tests (the shared ones are in tests/sandbox_fixtures.py)."""

from __future__ import annotations

import pytest
from sandbox_helpers import Api

from runbook_lib.sandbox import Sandbox


@pytest.fixture
def api(seeded_sandbox: Sandbox) -> Api:
    """The operator on the seeded sandbox's new API."""
    return Api(seeded_sandbox)


@pytest.fixture
def legacy(seeded_sandbox: Sandbox) -> Api:
    """The operator on the seeded sandbox's legacy API."""
    return Api(seeded_sandbox, legacy=True)
