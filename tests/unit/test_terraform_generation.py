"""One rule tells Terraform 0.11 (atlas, state 3, text plans) from 0.12 and later (the 1.x line)."""

from __future__ import annotations

import pytest

from runbook_lib import terraform


@pytest.mark.parametrize("version, expected", [
    ("0.11.11", 0), ("0.11.14", 0), ("0.9.0", 0), ("", 0), (None, 0),
    ("0.12.0", 1), ("0.15.5", 1), ("1.1.0-beta1", 1), ("1.15.5", 1),
])
def test_generation(version, expected):
    assert terraform.generation(version) == expected


def test_version_tuple_drops_suffixes():
    assert terraform.version_tuple("1.1.0-beta1") == (1, 1, 0)
    assert terraform.version_tuple("0.11.13") > terraform.version_tuple("0.11.9")


def test_no_other_module_compares_versions_with_its_own_rule():
    from pathlib import Path

    package = Path(terraform.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if "sandbox" not in p.parts and p.name != "terraform.py"
                 and ("_version_tuple(" in p.read_text() or "(0, 12)" in p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("target, state_format, written_by, refused", [
    ("1.15.5", 3, "0.11.11", True),   # a 0.11 state: unqualified providers, 0.14+ refuse it at init
    ("0.14.0", 4, "0.12.31", True),   # 0.12 wrote format 4, still without registry namespaces
    ("1.15.5", 3, None, True),        # format 3 is always before 0.12
    ("1.15.5", 4, "0.13.7", False),   # the 0.13 upgrade qualified them
    ("1.15.5", 4, None, False),       # a header without a version says nothing: nothing refused
    ("0.13.7", 3, "0.11.11", False),  # 0.13 runs its own upgrade
    ("0.11.11", 3, "0.11.11", False),
    ("", 3, "0.11.11", False),
])
def test_cannot_read_state(target, state_format, written_by, refused):
    why = terraform.cannot_read_state(target, state_format, written_by)
    assert bool(why) is refused
    if refused:
        assert f"Terraform {target} cannot read this state" in why and "Invalid legacy provider address" in why
