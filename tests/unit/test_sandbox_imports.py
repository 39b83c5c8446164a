"""The sandbox judges the runbook, so it must not borrow the runbook's code to decide an answer.

Every module under `runbook_lib/sandbox/` is parsed and each of its imports (top-level or inside a
function) is checked against the runbook's modules the developers' guide forbids there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SANDBOX = Path(__file__).resolve().parents[2] / "runbook_lib" / "sandbox"
FORBIDDEN = ("plans", "steps", "tfe", "legacy", "http", "context", "inventory", "batch", "rehearsal")


def _is_forbidden(name: str) -> bool:
    return any(name == f"runbook_lib.{bad}" or name.startswith(f"runbook_lib.{bad}.") for bad in FORBIDDEN)


def forbidden_in(source: str) -> list[str]:
    """The runbook modules an ``import`` or ``from ... import`` in the source names (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if _is_forbidden(alias.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if _is_forbidden(node.module):
                found.add(node.module)
            else:  # `from runbook_lib import legacy`
                found |= {f"{node.module}.{a.name}" for a in node.names if _is_forbidden(f"{node.module}.{a.name}")}
    return sorted(found)


def test_the_checker_sees_every_kind_of_import():
    source = ("import runbook_lib.tfe\nfrom runbook_lib import legacy\nfrom runbook_lib.steps.workspaces import x\n"
              "def f():\n    from runbook_lib.plans import parse_plan_json\n"
              "from runbook_lib.sandbox import errors\nfrom runbook_lib.state import read_header\n")
    assert forbidden_in(source) == ["runbook_lib.legacy", "runbook_lib.plans", "runbook_lib.steps.workspaces",
                                    "runbook_lib.tfe"]


MODULES = sorted(SANDBOX.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(SANDBOX)) for p in MODULES])
def test_no_sandbox_module_imports_the_runbooks_own_code(path: Path):
    assert forbidden_in(path.read_text(encoding="utf-8")) == []


def test_the_rehearsal_helpers_live_outside_the_sandbox():
    assert not (SANDBOX / "rehearsal.py").exists()
    assert len(MODULES) > 20  # the walk found the package, not an empty folder
