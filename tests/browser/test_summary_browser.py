"""What the auditor and the operator see after a demo-sized batch (the demo's 6 environments, apply mode).

- `summary.html` opened in headless Chromium at 1400 px: it is the render of `manifest.json`, every link
  resolves (to an executed notebook's HTML copy, a backups' checksum file or an anchor; never a state
  file), nothing overflows sideways, it prints, and each environment's evidence on the page is the
  ledger's (serials, lineage, sha256s, workspace id, run, commit, confirmation, who).
- every executed notebook of the batch is free of tracebacks and Python reprs (`StepResult(...)`, quoted
  strings, `<... object at 0x...>`): the happy path reads as sentences, banners and tables.

Screenshots go to $TFE_RUNBOOK_SCREENSHOTS when set (the README's `docs/summary.png` is made that way).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from runbook_lib import summary
from runbook_lib.audit import sha256_file
from runbook_lib.demo import DemoResult, run_demo
from runbook_lib.ledger import Ledger

from test_gate_browser import CHROMIUM_ARGS, _chromium

# Plain-text forms that are Python's, not the runbook's: dataclass/constructor reprs, quoted strings,
# dict/list reprs, default object reprs.
PYTHON_REPR = re.compile(r"^\s*(?:[A-Z]\w*\(\w+=|'|\"|\{'|\[')|object at 0x[0-9a-f]+|^<\w+(?:\.\w+)+ object>")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    saved = dict(os.environ)  # the demo exports the sandbox's variables; give the session its own back
    try:
        result = run_demo(out=tmp_path_factory.mktemp("demo"), environments=6, jobs=2)
        assert result.ok, result.batch.frame().to_string()
        yield result
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _python_reprs_and_tracebacks(notebook: Path) -> list[str]:
    found = []
    for index, cell in enumerate(nbformat.read(notebook, 4).cells):
        for output in cell.get("outputs", []):
            where = f"{notebook.parent.name}/{notebook.name} cell {index}"
            if output.output_type == "error":
                found.append(f"{where}: error output {output.ename}")
            texts = [output.get("text", "")] if output.output_type == "stream" else \
                [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                if "Traceback (most recent call last)" in text:
                    found.append(f"{where}: traceback")
            plain = output.get("data", {}).get("text/plain", "")
            if plain and PYTHON_REPR.search(plain):
                found.append(f"{where}: Python repr {plain[:80]!r}")
    return found


def test_executed_notebooks_have_no_python_reprs_or_tracebacks(demo):
    notebooks = sorted(p for p in demo.batch.batch_dir.glob("*/*.ipynb") if ".attempt-" not in p.name)
    assert len(notebooks) == 6 * 7
    problems = [p for nb in notebooks for p in _python_reprs_and_tracebacks(nb)]
    assert problems == []
    # and the scan is not blind: it sees what the notebooks used to show
    assert PYTHON_REPR.search("StepResult(passed=True, summary='x')")
    assert PYTHON_REPR.search("'plan mode: nothing was changed'")
    assert PYTHON_REPR.search("<pandas.io.formats.style.Styler object at 0x7f00aa>")


def test_a_second_sdk_reads_every_workspace_back_as_the_batch_left_it(demo):
    # pytfe (HashiCorp's Python SDK), not the runbook's client: unlocked, the legacy lineage and outputs, and
    # the newest run planned no changes, for every environment the batch migrated
    assert demo.read_back is not None and len(demo.read_back) == 6
    for row in demo.read_back:
        assert row["unlocked"] and row["lineage"] and row["outputs"] and row["no_changes"], row
        assert row["latest_run"].startswith("run-") and row["agrees"]


def test_the_batch_cuts_over_a_reader_after_its_source_and_deletes_the_source_after_its_reader(demo):
    # app-prod reads network-prod's state (terraform_remote_state): the phases of the two overlap with the
    # others', but app-prod is cut over only once network-prod holds its state (so the source is repointed)
    # and network-prod is deleted only once app-prod no longer reads it
    import json

    from runbook_lib.ledger import Ledger

    ledger = Ledger(demo.batch.batch_dir / "ledger.sqlite")
    runs = [r for r in ledger.history() if r.action == "run" and r.mode == "apply" and r.status == "passed"]
    at = {(r.environment, r.step[:2]): (r.started_at, r.finished_at) for r in runs}
    reader, source = "acme-legacy/app-prod", "acme-legacy/network-prod"
    assert next(r for r in runs if r.environment == reader and r.step[:2] == "00").evidence["reads_state_of"] == [source]
    assert at[(reader, "04")][0] >= at[(source, "03")][1]
    assert at[(source, "06")][0] >= at[(reader, "05")][1]
    push = json.loads((demo.batch.batch_dir / "acme-legacy__app-prod" / "05_push.json").read_text())
    assert push["remote_state"] == {"repointed": [f"{source} -> acme/network-prod"], "still_reads_legacy": []}


def test_summary_page_is_the_manifest_and_its_evidence_is_the_ledger(demo, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    batch = demo.batch.batch_dir
    manifest = json.loads((batch / "manifest.json").read_text())
    page_file = batch / "summary.html"
    assert page_file.read_text() == summary.render(manifest)  # a view of the manifest, nothing more
    assert manifest["files"]["summary.html"]["sha256"] == sha256_file(page_file)
    ledger = Ledger(batch / "ledger.sqlite")
    environments = sorted(manifest["environments"])
    assert len(environments) == 6
    shots = Path(os.environ.get("TFE_RUNBOOK_SCREENSHOTS") or tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_file.as_uri())
            page.screenshot(path=str(shots / "summary.png"))
            assert page.evaluate("document.documentElement.scrollWidth") <= 1400  # no sideways scrolling
            assert page.locator("svg.timeline rect").count() == 6 * 7
            header = page.locator("table.who").inner_text()
            assert manifest["operator"] in header and manifest["runbook"]["version"] in header
            assert str(manifest["runbook"]["git_commit"]) in header and "apply" in header

            hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
            # a notebook per cell, an anchor per row, a checksum file each, the workspace and its verifying run
            # on the TFE host each
            assert len(hrefs) == 6 * 7 + 6 + 6 + 6 * 2
            tfe = os.environ["TFE_ADDRESS"]
            for href in hrefs:
                if href.startswith("#"):
                    assert page.locator(f"[id='{href[1:]}']").count() == 1, href
                    continue
                if href.startswith(tfe):
                    assert href.startswith(f"{tfe}/app/acme/workspaces/"), href
                    continue
                assert (batch / href).is_file(), href
                assert "/state/" not in href and href in manifest["files"], href  # archived; no state file

            for env in environments:
                text = page.locator(f"section[id='{summary.anchor(env)}']").inner_text()
                three = ledger.passed(env, "03_migrate_state").evidence
                for fact in (three["legacy_sha256"], three["workspace_sha256"], three["lineage"],
                             three["workspace_id"], three["state_version"]):
                    assert fact in text, (env, fact)
                assert f"serial {three['legacy_serial']}" in text and "byte for byte" in text
                five = ledger.passed(env, "05_commit_and_verify").evidence
                assert five["run_id"] in text and five["commit"] in text and "no changes" in text
                assert page.locator(f"section[id='{summary.anchor(env)}'] a[href='{five['run_url']}']").count() == 1
                for step, fact in manifest["environments"][env]["steps"].items():  # absolute times in each cell
                    assert fact["started_at"][11:19] in page.locator("table.matrix").inner_text()
                six_run = ledger.passed(env, "06_delete_legacy_environment")
                decision = six_run.evidence["confirmation"]
                assert f"\u201cdelete {env}\u201d by {decision['operator']} via {decision['via']}" in text
                assert f"deleted at {six_run.finished_at}" in text
                assert six_run.evidence["final_backup"]["sha256"] in text
                assert "unlinked in the legacy UI from" in text and "baseline: configuration version" in text
                for step, fact in manifest["environments"][env]["steps"].items():
                    assert fact["duration_s"] == round(ledger.latest(env, step, "apply").duration_s, 2)
                # the backups' checksum file matches the backups themselves
                checksums = (batch / manifest["environments"][env]["evidence"]["backups"]["checksums"])
                lines = [line.split("  ") for line in checksums.read_text().splitlines()]
                assert len(lines) == 2  # step 3's backup and step 6's final one
                for digest, name in lines:
                    assert sha256_file(checksums.parent / name) == digest
            page.emulate_media(media="print")
            pdf = page.pdf(path=str(tmp_path / "summary.pdf"), format="A4")
            assert len(pdf) > 10_000
        finally:
            browser.close()
