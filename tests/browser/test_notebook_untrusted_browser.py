"""Executed notebooks read correctly in JupyterLab, untrusted or trusted, and a host's markup stays text.

An auditor opens an executed notebook of the batch in JupyterLab: it is not trusted there (it was not
run in that JupyterLab), so JupyterLab sanitizes its HTML output, dropping `<style>` elements. The
runbook's banners and tables use inline styles only, so they keep their colours and their wrapping; the
tables fit a 1,400 px window. The notebooks come from a plan batch (steps 0-2) and the survey against a
legacy environment holding `hostile_markup`'s payloads: opened untrusted, and again trusted (JupyterLab
then renders the HTML as it is, as it does for the live output of a cell), no payload runs (no dialog,
no injected element). Screenshots go to $TFE_RUNBOOK_SCREENSHOTS when set (else the test's tmp_path).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import nbformat
from nbformat.sign import NotebookNotary
import pytest
from hostile_markup import BRANCH, LINEAGE, plant
from sandbox_fixtures import sandbox_in_environ
from test_gate_browser import CHROMIUM_ARGS, _chromium, jupyterlab_server

from runbook_lib import audit
from runbook_lib.batch import STEPS, BatchRunner
from runbook_lib.mapping import propose
from runbook_lib.rehearsal import NEW_ORG, batch_parameters

ENV = "network-prod"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: The verdict banners' backgrounds (display.COLOURS) as a browser computes them.
PASS_BACKGROUND, PLAN_BACKGROUND, ATTENTION_BACKGROUND = "rgb(232, 245, 233)", "rgb(227, 242, 253)", "rgb(255, 248, 225)"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Executed notebooks of a hostile environment: step 0 (PASS), step 2 (a plan), the survey."""
    import papermill

    out = tmp_path_factory.mktemp("untrusted")
    with sandbox_in_environ(out / "sandbox", seed=1) as sandbox:
        planted = plant(sandbox, sandbox.legacy_org, ENV)
        # the operator's facts (working directory, variables, teams), hostile too, as the mapping carries them
        rows = [replace(row, **planted.mapping_columns) for row in propose(sandbox.legacy_org, [ENV], NEW_ORG)]
        result = BatchRunner(rows, list(STEPS[:3]), mode="plan",
                             out=out / "runs", batch_id="untrusted", jobs=1,
                             parameters=batch_parameters(sandbox.env)).run()
        env_dir = result.batch_dir / audit.env_dirname(f"{sandbox.legacy_org}/{ENV}")
        survey = out / "survey.ipynb"
        papermill.execute_notebook(str(NOTEBOOKS / "00_preflight_inventory.ipynb"), str(survey), progress_bar=False,
                                   parameters={"legacy_org": sandbox.legacy_org, "legacy_env": "", "new_org": NEW_ORG,
                                               "audit_root": str(out / "survey"), "interactive": False})
        yield {"step00": env_dir / f"{STEPS[0]}.ipynb", "step02": env_dir / f"{STEPS[2]}.ipynb", "survey": survey}


def _open(page, url: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url)
    page.locator(".jp-NotebookPanel").first.wait_for(timeout=60_000)
    select = page.locator(".jp-Dialog button", has_text=re.compile(r"^(Select|No Kernel)$"))
    try:
        select.first.wait_for(timeout=5_000)
        select.first.click()
    except PlaywrightTimeout:
        pass
    page.locator(".jp-OutputArea-output").first.wait_for(timeout=30_000)
    no = page.locator(".jp-toast-button", has_text=re.compile(r"^No$"))
    if no.count():
        no.first.click()
    page.wait_for_timeout(1500)  # outputs render, and a planted script would have had its chance


def test_executed_notebooks_read_correctly_untrusted_and_trusted_and_run_no_planted_script(executed, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("TFE_RUNBOOK_SCREENSHOTS") or tmp_path)
    root, state = tmp_path / "lab", tmp_path / "state"
    root.mkdir()
    (state / "jdata").mkdir(parents=True)
    notary = NotebookNotary(data_dir=str(state / "jdata"))
    for name, path in executed.items():
        shutil.copy(path, root / f"{name}.ipynb")
        assert not notary.check_signature(nbformat.read(root / f"{name}.ipynb", 4))  # opens untrusted
        # A trusted copy: its own content (the notary trusts by digest), signed by this JupyterLab's secret.
        trusted = nbformat.read(path, 4)
        trusted.metadata["copy"] = "trusted"
        notary.sign(trusted)
        nbformat.write(trusted, root / f"trusted-{name}.ipynb")
    for name in executed:
        assert not notary.check_signature(nbformat.read(root / f"{name}.ipynb", 4))
    dialogs: list[str] = []
    with jupyterlab_server(root, state) as (port, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for name in ("step00", "step02", "survey"):
                for prefix in ("", "trusted-"):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
                    _open(page, f"http://127.0.0.1:{port}/lab/workspaces/{prefix}{name}/tree/{prefix}{name}.ipynb"
                                f"?reset&token={token}")
                    for i, cell in enumerate(page.locator(".jp-CodeCell", has=page.locator(
                            ".runbook-table, .runbook-verdict")).all()):
                        cell.scroll_into_view_if_needed()
                        cell.screenshot(path=str(shots / f"{prefix or 'untrusted-'}{name}-{i}.png"))
                    outputs = page.locator(".jp-OutputArea-output")
                    # the payloads are there, as text; nothing of them is an element
                    text = " ".join(outputs.all_inner_texts())
                    assert (LINEAGE in text) if name != "step02" else (BRANCH in text), (prefix, name)
                    injected = page.eval_on_selector_all(
                        ".jp-OutputArea-output img, .jp-OutputArea-output svg, .jp-OutputArea-output script, "
                        ".jp-OutputArea-output [onerror], .jp-OutputArea-output [onload]",
                        "els => els.map(e => e.outerHTML.slice(0, 200))")
                    assert injected == [], (prefix, name)
                    # the verdict banner keeps its colours (inline styles survive the sanitizer)
                    banner = page.locator(".runbook-verdict").last
                    # (a first survey is amber: every environment waits for the facts only the operator knows)
                    expected = {"step02": PLAN_BACKGROUND, "survey": ATTENTION_BACKGROUND}.get(name, PASS_BACKGROUND)
                    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == expected, (prefix, name)
                    assert banner.evaluate("e => getComputedStyle(e).borderLeftWidth") == "6px", (prefix, name)
                    # tables wrap by words and fit the window: no output scrolls sideways
                    cell = page.locator(".runbook-table td").first
                    assert cell.evaluate("e => getComputedStyle(e).whiteSpace") in ("pre-wrap", "nowrap")
                    wide = page.evaluate("""() => [...document.querySelectorAll('.runbook-table')]
                        .filter(e => e.scrollWidth > e.clientWidth + 1)
                        .map(e => e.innerText.slice(0, 60) + ': ' + e.scrollWidth + ' > ' + e.clientWidth)""")
                    assert wide == [], (prefix, name)
                    page.close()
        finally:
            browser.close()
    assert dialogs == []
