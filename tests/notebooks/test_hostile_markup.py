"""Markup planted in a legacy environment stays text in every HTML file the runbook writes.

A legacy user plants `<img src=x onerror=...>`, `"><svg onload=...>` and a lineage holding
`</style><img ...>` in a variable key, the VCS branch, the working directory, the state's lineage and a
`terraform_remote_state` source (`hostile_markup.plant`, through the sandbox's store). A plan batch of
steps 0-2 then writes executed notebooks, their HTML copies and summary.html, and the survey (notebook 00
for the whole organization) writes its own: each page is parsed as a browser would and must hold no
event handler, no injected element and no script link, while showing every payload as text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from hostile_markup import (BRANCH, LINEAGE, REMOTE_STATE, VARIABLE_KEY, WORKING_DIRECTORY, Planted, live_markup,
                            plant, shown_text)
from sandbox_fixtures import sandbox_in_environ

from runbook_lib import audit
from runbook_lib.batch import STEPS, BatchRunner
from runbook_lib.mapping import propose
from runbook_lib.rehearsal import NEW_ORG, batch_parameters
from runbook_lib.sandbox import Sandbox

ENV = "network-prod"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Planted, Path]]:
    out = tmp_path_factory.mktemp("hostile")
    with sandbox_in_environ(out / "sandbox", seed=1) as sandbox:
        yield sandbox, plant(sandbox, sandbox.legacy_org, ENV), out


def _pages(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.html"))}


def test_a_plan_batch_writes_no_live_markup(hostile):
    sandbox, planted, out = hostile
    rows = [replace(row, **planted.mapping_columns) for row in propose(sandbox.legacy_org, [ENV], NEW_ORG)]
    runner = BatchRunner(rows, list(STEPS[:3]), mode="plan", out=out / "runs",
                         batch_id="hostile", jobs=1, parameters=batch_parameters(sandbox.env))
    result = runner.run()
    pages = _pages(result.batch_dir)
    env_dir = audit.env_dirname(f"{sandbox.legacy_org}/{ENV}")
    assert set(pages) >= {"summary.html", *(f"{env_dir}/{step}.html" for step in STEPS[:3])}, sorted(pages)
    found = {name: live_markup(page) for name, page in pages.items()}
    assert {name: problems for name, problems in found.items() if problems} == {}
    # The scan is not blind: every payload reached a page, as text.
    zero, two = shown_text(pages[f"{env_dir}/{STEPS[0]}.html"]), shown_text(pages[f"{env_dir}/{STEPS[2]}.html"])
    for payload in (LINEAGE, REMOTE_STATE):
        assert payload in zero, payload
    for payload in (BRANCH, WORKING_DIRECTORY, VARIABLE_KEY):
        assert payload in two, payload
    assert live_markup(f"<p>{VARIABLE_KEY}</p><style>{LINEAGE}</style><a href='javascript:x'>a</a>") != []


def test_the_survey_writes_no_live_markup(hostile):
    import papermill

    sandbox, planted, out = hostile
    survey = out / "survey"
    survey.mkdir()
    executed = survey / "00_preflight_inventory.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / executed.name), str(executed), progress_bar=False,
                               parameters={"legacy_org": sandbox.legacy_org, "legacy_env": "", "new_org": NEW_ORG,
                                           "audit_root": str(survey), "interactive": False})
    page = audit.notebook_to_html(executed).read_text(encoding="utf-8")
    assert live_markup(page) == []
    text = shown_text(page)
    for payload in (LINEAGE, REMOTE_STATE, BRANCH):  # the working directory is the operator's to write
        assert payload in text, payload
