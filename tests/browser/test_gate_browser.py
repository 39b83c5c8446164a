"""The operator's hand in a real browser: JupyterLab and the sandbox's legacy UI, headless Chromium.

An environment of a sandbox of this test's own goes through steps 1-3 (library calls). Then, as an operator
would, in one browser:
- notebook 04 (apply mode, interactive) in JupyterLab: Run All shows the instructions and a WAITING status (no
  traceback, the ledger row still open); in a second tab the operator signs in to the legacy UI, opens the
  environment's Integrations page and clicks "Unlink"; back in JupyterLab, "Done: I unlinked ..." finishes the
  step by itself (PASS in place, baseline recorded);
- step 5 runs (library call) and proves the unlink: the legacy host did not react to the push;
- notebook 06: Run All takes the final backup and waits; in the legacy UI the operator types the environment's
  name and clicks "Delete environment"; back in JupyterLab they type the name (the button stays disabled until
  then) and click "Done: I deleted ..."; the step proves the deletion from the legacy host and turns PASS.
Screenshots go to $TFE_RUNBOOK_SCREENSHOTS (default: the test's tmp_path).

Chromium is Debian's `chromium` package driven by Playwright (`executable_path`); `.ci/run` installs it.
The test is skipped only when it is missing and cannot be installed here (the reason is printed).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nbformat
import pytest
import requests

from runbook_lib.catalog import step_parameters
from runbook_lib.context import StepContext
from runbook_lib.ledger import Ledger
from runbook_lib.legacy import NOT_FOUND, STATE, LegacyClient
from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.control import free_port
from runbook_lib.rehearsal import batch_environ, batch_parameters
from runbook_lib.settings import Settings
from runbook_lib.steps import commit_verify, organization, state_migration, workspaces
from sandbox_fixtures import write_operator_mapping

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
VENV_BIN = Path(sys.executable).parent
ENV = "web.prod"
SLUG = f"acme-legacy/{ENV}"


def _chromium() -> str:
    """The chromium binary, installed when missing and possible; skips (printing why) otherwise."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    why = "chromium is not installed"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        proc = subprocess.run("apt-get update -q && apt-get install -y -q chromium", shell=True,
                              capture_output=True, text=True, timeout=600)
        if Path(CHROMIUM).is_file():
            return CHROMIUM
        why = f"apt-get install chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    else:
        why += " and this user cannot install it (not root or no apt-get); .ci/run installs it"
    print(f"SKIP browser test: {why}")
    pytest.skip(why)


@pytest.fixture
def migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Sandbox, dict[str, str], Path]]:
    """A sandbox whose web.prod went through steps 1-3 (PASS in the ledger under `<tmp>/runs`)."""
    with Sandbox(tmp_path / "sandbox", seed=6) as sb:  # plain HTTP: the browser needs no test CA
        environ = batch_environ(sb.env)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        runs = tmp_path / "runs"
        write_operator_mapping(sb, runs, [ENV])
        params = batch_parameters(sb.env)
        for step, module, extra in [
                ("01_create_organization", organization, params),
                ("02_create_workspaces", workspaces, dict(step_parameters("02_create_workspaces", params),
                                                          accept_empty_sensitive=True)),
                ("03_migrate_state", state_migration, {})]:
            ctx = StepContext.create(step=step, legacy_org="acme-legacy", legacy_env=ENV, new_org="acme",
                                     mode="apply", audit_root=str(runs), interactive=False, **extra)
            module.apply(ctx)
            ctx.conclude(module.verify(ctx))
        yield sb, environ, runs


def _notebook_for(target: Path, runs: Path, name: str) -> Path:
    """A copy of a step notebook whose parameters name web.prod, apply mode, interactive, this ledger."""
    nb = nbformat.read(NOTEBOOKS / name, 4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {"legacy_env": ENV, "mode": "apply", "audit_root": str(runs), "ledger_path": str(runs / "ledger.sqlite"),
              "interactive": True, "confirm": ""}
    for name_, value in values.items():
        cell.source, n = re.subn(rf"^{name_} = .*$", f"{name_} = {value!r}", cell.source, flags=re.MULTILINE)
        assert n == 1, name_
    path = target / name
    nbformat.write(nb, path)
    return path


@pytest.fixture
def jupyterlab(tmp_path: Path, migrated) -> Iterator[tuple[str, Path]]:
    """JupyterLab on 127.0.0.1 serving a folder with the prepared notebook; yields (notebook URL, runs)."""
    sandbox, environ, runs = migrated
    root = tmp_path / "lab"
    root.mkdir()
    for name in ("04_disable_legacy_vcs.ipynb", "06_delete_legacy_environment.ipynb"):
        _notebook_for(root, runs, name)
    with jupyterlab_server(root, tmp_path, environ) as (port, token):
        yield f"http://127.0.0.1:{port}/lab/tree/{{}}?token={token}", runs, sandbox


@contextmanager
def jupyterlab_server(root: Path, state: Path, environ: dict[str, str] | None = None) -> Iterator[tuple[int, str]]:
    """JupyterLab on 127.0.0.1 serving `root`, its configuration and data under `state`, with `environ` added to
    this process's environment for its kernels; yields (port, token)."""
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, **(environ or {}), "JUPYTER_CONFIG_DIR": str(state / "jcfg"), "JUPYTER_DATA_DIR": str(state / "jdata"),
           "JUPYTER_RUNTIME_DIR": str(state / "jrt"), "IPYTHONDIR": str(state / "ipy")}
    log = (state / "jupyterlab.log").open("w")
    proc = subprocess.Popen([str(VENV_BIN / "jupyter"), "lab", "--no-browser", f"--ServerApp.token={token}",
                             "--ServerApp.ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={root}",
                             f"--LabApp.workspaces_dir={state / 'jws'}", "--LabApp.news_url=",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             # CI containers run as root; JupyterLab refuses that unless told
                             *(["--allow-root"] if os.geteuid() == 0 else [])],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (state / "jupyterlab.log").read_text()[-2000:]
            time.sleep(0.3)
        yield port, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def _dismiss_news(page) -> None:
    """Close JupyterLab's "get notified about news?" toast so screenshots show the notebook."""
    no = page.locator(".jp-toast-button", has_text=re.compile(r"^No$"))
    if no.count():
        no.first.click()
        page.wait_for_timeout(1000)  # the toast slides away


def _open_and_run_all(page, url: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url)
    page.locator(".jp-NotebookPanel").first.wait_for(timeout=60_000)
    # A fresh JupyterLab asks which kernel to start: take the notebook's own (Python 3).
    select = page.locator(".jp-Dialog button", has_text=re.compile(r"^Select$"))
    try:
        select.wait_for(timeout=10_000)
        select.click()
    except PlaywrightTimeout:
        pass  # no dialog: the kernel started on its own
    # The kernel must be up before Run All (otherwise the run is queued behind its start); the notebook open
    # in front is the one that counts (an earlier one keeps its own idle kernel).
    _idle(page)
    _run_all(page)


def _idle(page) -> None:
    page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
        timeout=60_000)


def _legacy_ui(page, sandbox: Sandbox, path: str) -> None:
    """Open a page of the sandbox's legacy UI, signing in as the operator when asked."""
    page.goto(f"{sandbox.address}{path}")
    if "/login" in page.url:
        page.get_by_label("Username").fill("operator")
        page.get_by_label("Password").fill(sandbox.operator_token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{path}")


def test_the_operator_unlinks_and_deletes_in_the_legacy_ui_during_the_notebook_runs(jupyterlab, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import expect, sync_playwright

    url, runs, sandbox = jupyterlab
    shots = Path(os.environ.get("TFE_RUNBOOK_SCREENSHOTS") or tmp_path)
    legacy = LegacyClient(Settings.from_env(), read_only=True)
    ledger = Ledger(runs / "ledger.sqlite")
    env_page = f"/terraform/acme-legacy/environments/{ENV}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        lab, ui = context.new_page(), context.new_page()
        try:
            # --- step 4 ---
            _open_and_run_all(lab, url.format("04_disable_legacy_vcs.ipynb"))
            done = lab.get_by_role("button", name=f"Done: I unlinked {SLUG} in the legacy UI")
            done.wait_for(timeout=60_000)
            lab.get_by_text("waiting for you").first.wait_for(timeout=30_000)
            _idle(lab)
            assert lab.get_by_text("Traceback").count() == 0
            assert ledger.latest(SLUG, "04_disable_legacy_vcs", "apply").status == "running"
            _dismiss_news(lab)
            lab.screenshot(path=str(shots / "04-waiting.png"), full_page=True)
            _legacy_ui(ui, sandbox, f"{env_page}/integrations")
            ui.get_by_text("Version Control Integration").wait_for(timeout=10_000)
            ui.screenshot(path=str(shots / "legacy-ui-integrations.png"), full_page=True)
            ui.get_by_role("button", name="Unlink").click()
            ui.get_by_text("Unlinked from version control.").wait_for(timeout=10_000)
            assert sandbox.store.find_environment("acme-legacy", ENV)["vcs_repo"] is None
            done.click()
            lab.locator(".runbook-pass", has_text=re.compile(r"04_disable_legacy_vcs .*Not proven yet: step 5")
                        ).first.wait_for(timeout=60_000)
            lab.screenshot(path=str(shots / "04-passed.png"), full_page=True)

            # --- step 5 (library call): proves the unlink ---
            ctx = StepContext.create(step="05_commit_and_verify", legacy_org="acme-legacy", legacy_env=ENV,
                                     new_org="acme", mode="apply", audit_root=str(runs), interactive=False,
                                     wait_timeout=120)
            commit_verify.apply(ctx)
            five = ctx.conclude(commit_verify.verify(ctx))
            assert "no new configuration version and no state change" in five.summary

            # --- step 6 ---
            _open_and_run_all(lab, url.format("06_delete_legacy_environment.ipynb"))
            done = lab.get_by_role("button", name=f"Done: I deleted {SLUG} in the legacy UI")
            done.wait_for(timeout=60_000)
            _idle(lab)
            assert (runs / "acme-legacy__web.prod" / "state" / "final.json").is_file()  # backed up before the ask
            assert done.is_disabled()  # until the environment's name is typed
            assert legacy.read_state("acme-legacy", ENV).found == STATE
            _legacy_ui(ui, sandbox, f"{env_page}/settings")
            ui.get_by_label("confirm").fill(ENV)
            ui.get_by_role("button", name="Delete environment").click()
            ui.get_by_text(f"Deleted {ENV}.").wait_for(timeout=10_000)
            lab.get_by_placeholder(SLUG).fill(SLUG)
            expect(done).to_be_enabled(timeout=10_000)  # the kernel enables it once the typed name matches
            lab.screenshot(path=str(shots / "06-waiting.png"), full_page=True)
            done.click()
            lab.locator(".runbook-pass", has_text=re.compile(r"06_delete_legacy_environment .*gone from the legacy "
                                                             r"host")).first.wait_for(timeout=60_000)
            assert lab.locator(".runbook-waiting").count() == 0
            lab.screenshot(path=str(shots / "06-passed.png"), full_page=True)
        except Exception:
            lab.screenshot(path=str(tmp_path / "failure-lab.png"))  # kept with the test's tmp_path for diagnosis
            ui.screenshot(path=str(tmp_path / "failure-ui.png"))
            raise
        finally:
            browser.close()
    assert legacy.read_state("acme-legacy", ENV).found == NOT_FOUND
    verdict = ledger.latest(SLUG, "06_delete_legacy_environment", "apply")
    assert verdict.status == "passed" and verdict.evidence["confirmation"]["via"] == "button"
    assert verdict.evidence["proof"]["proven"] is True
    decision = ledger.latest(SLUG, "06_delete_legacy_environment", action="confirm")
    assert decision.evidence["action"] == "delete" and decision.evidence["target"] == SLUG
    assert ledger.latest(SLUG, "04_disable_legacy_vcs", "apply").evidence["confirmation"]["via"] == "button"
