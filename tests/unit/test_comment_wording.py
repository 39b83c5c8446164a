"""Comments and docstrings say what the code does, not which work item added it."""

from __future__ import annotations

import re
from pathlib import Path

import runbook_lib

WORK_ITEM = re.compile(r"(?i)\bissue\s*#?\d+|seams for the next issue")


def test_no_work_item_wording_in_the_package():
    package = Path(runbook_lib.__file__).parent
    found = [f"{p.relative_to(package)}:{n}" for p in sorted(package.rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if WORK_ITEM.search(line)]
    assert found == []
