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
