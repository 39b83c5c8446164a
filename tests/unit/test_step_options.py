"""Each step declares its options; `StepContext.create` refuses one it does not know, before writing anything."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from runbook_lib import catalog
from runbook_lib.context import StepContext
from runbook_lib.errors import ConfigError

pytestmark = pytest.mark.unit

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
HOSTS = {"legacy_address": "http://127.0.0.1:9", "tfe_address": "http://127.0.0.1:9"}


def _create(tmp_path, step, legacy_env="web", **options):
    return StepContext.create(step=step, legacy_org="acme-legacy", legacy_env=legacy_env, new_org="acme",
                              audit_root=str(tmp_path / "runs"), interactive=False, **HOSTS, **options)


# A misspelling of one of the step's options (or, for a step without options, a plausible one).
MISSPELT = {
    catalog.PREFLIGHT: ("mapping_cvs", "mapping_csv"),
    catalog.CREATE_ORGANIZATION: ("vcs_http_ulr", "vcs_http_url"),
    catalog.CREATE_WORKSPACES: ("acept_empty_sensitive", "accept_empty_sensitive"),
    catalog.MIGRATE_STATE: ("migraton_path", "migration_path"),
    catalog.DISABLE_LEGACY_VCS: ("mapping_cvs", "mapping_csv"),
    catalog.COMMIT_AND_VERIFY: ("backend_targt", "backend_target"),
    catalog.DELETE_LEGACY_ENVIRONMENT: ("accept_no_final_backups", "accept_no_final_backup"),
}


def test_every_step_declares_its_options():
    assert set(catalog.OPTIONS) == set(catalog.STEPS) == set(MISSPELT)


@pytest.mark.parametrize("step", catalog.STEPS)
def test_a_misspelt_option_is_refused_naming_it_and_the_steps_options(tmp_path, step):
    wrong, meant = MISSPELT[step]
    with pytest.raises(ConfigError) as info:
        _create(tmp_path, step, **{wrong: "x"})
    message = str(info.value)
    assert f"step {step} has no option {wrong!r}" in message and "\n" not in message
    if meant:
        assert f"did you mean {meant!r}" in message
        assert all(name in message for name in catalog.options_of(step).names())
    else:
        assert "it takes no options" in message
    assert not (tmp_path / "runs").exists(), "nothing is written for a refused option: no folder, no ledger"


def test_text_parameters_become_the_declared_types(tmp_path):
    ctx = _create(tmp_path, catalog.COMMIT_AND_VERIFY, wait_timeout="240", poll_interval="0.5", commit_branch=0)
    assert ctx.options.wait_timeout == 240 and isinstance(ctx.options.wait_timeout, int)
    assert ctx.options.poll_interval == 0.5 and ctx.options.commit_branch == "0"
    assert ctx.options.backend_target == "atlas"  # not given: the default
    workspaces = _create(tmp_path, catalog.CREATE_WORKSPACES, migrate_teams="false", accept_empty_sensitive="True",
                         terraform_version="")
    assert workspaces.options.migrate_teams is False and workspaces.options.accept_empty_sensitive is True
    assert workspaces.options.terraform_version == ""
    with pytest.raises(Exception):  # frozen: a step cannot change its own parameters
        workspaces.options.migrate_teams = True


@pytest.mark.parametrize("step, options, words", [
    (catalog.COMMIT_AND_VERIFY, {"wait_timeout": "ten"}, "option wait_timeout of step 05_commit_and_verify must be a "
                                                         "whole number, not 'ten'"),
    (catalog.COMMIT_AND_VERIFY, {"wait_timeout": 1.5}, "must be a whole number"),
    (catalog.COMMIT_AND_VERIFY, {"wait_timeout": 0}, "wait_timeout must be a positive number of seconds"),
    (catalog.COMMIT_AND_VERIFY, {"backend_target": "s3"}, "backend_target must be one of atlas, remote, cloud"),
    (catalog.CREATE_WORKSPACES, {"migrate_teams": "maybe"}, "must be True or False, not 'maybe'"),
    (catalog.CREATE_WORKSPACES, {"existing_team_members": "merge"}, "existing_team_members must be one of report"),
    (catalog.MIGRATE_STATE, {"migration_path": "rsync"}, "migration_path must be 'api' or 'cli'"),
    (catalog.MIGRATE_STATE, {"migration_path": "cli", "cli_target": "cloud"}, "new lineage"),
    (catalog.DISABLE_LEGACY_VCS, {"unlink_via": "api"}, "step 04_disable_legacy_vcs has no option 'unlink_via'"),
    (catalog.DELETE_LEGACY_ENVIRONMENT, {"accept_no_final_backup": "maybe"}, "must be True or False"),
])
def test_a_value_the_step_refuses_is_one_sentence_and_writes_nothing(tmp_path, step, options, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        _create(tmp_path, step, **options)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("step, name", [(catalog.MIGRATE_STATE, "git_base_url"),
                                        (catalog.COMMIT_AND_VERIFY, "git_base_url"),
                                        (catalog.CREATE_ORGANIZATION, "vcs_api_url"),
                                        (catalog.CREATE_WORKSPACES, "vcs_http_url")])
def test_a_url_option_with_a_credential_is_refused_and_writes_nothing(tmp_path, step, name):
    with pytest.raises(ConfigError, match=f"option {name} of step {step} carries a credential") as caught:
        _create(tmp_path, step, **{name: "https://oauth2:hunter2-pass@gitlab.example.com/acme"})
    assert "hunter2" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_only_step_0_surveys_the_whole_organization(tmp_path):
    ctx = _create(tmp_path, catalog.PREFLIGHT, legacy_env="", mapping_csv=str(tmp_path / "m.csv"))
    assert ctx.whole_organization and ctx.row.legacy_slug == f"acme-legacy/{catalog.ALL_ENVIRONMENTS}"
    assert ctx.audit_dir == tmp_path / "runs" and ctx.options.mapping_csv == str(tmp_path / "m.csv")
    assert ctx.ledger.latest("acme-legacy/*", catalog.PREFLIGHT).status == "running"
    assert not _create(tmp_path, catalog.PREFLIGHT).whole_organization
    with pytest.raises(ConfigError, match="set the parameters legacy_org, legacy_env and new_org"):
        _create(tmp_path, catalog.MIGRATE_STATE, legacy_env="")


def test_a_step_outside_the_runbook_takes_no_options(tmp_path):
    assert catalog.options_of("00_alpha") is catalog.StepOptions
    _create(tmp_path, "00_alpha")
    with pytest.raises(ConfigError, match="step 00_alpha has no option 'x'; it takes no options"):
        _create(tmp_path, "00_alpha", x=1)


def test_a_batchs_parameters_are_split_by_step():
    shared = {"wait_timeout": 60, "migration_path": "cli", "vcs_http_url": "https://git", "organization_email": "a@b"}
    assert catalog.step_parameters(catalog.COMMIT_AND_VERIFY, shared) == {"wait_timeout": 60}
    assert catalog.step_parameters(catalog.CREATE_WORKSPACES, shared) == {"migration_path": "cli",
                                                                         "vcs_http_url": "https://git"}
    assert catalog.step_parameters(catalog.DELETE_LEGACY_ENVIRONMENT, shared) == {}
    # The context's own parameters and a name no step knows are kept (create refuses the latter).
    kept = {"workspace": "w", "mode": "apply", "migraton_path": "cli"}
    assert catalog.step_parameters(catalog.MIGRATE_STATE, {**shared, **kept}) == {**kept, "migration_path": "cli"}


def _create_calls(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "create":
                yield node


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_each_notebook_names_its_step_from_the_catalog_and_passes_only_its_options(path):
    calls = list(_create_calls(path))
    assert len(calls) == 1, "one context per notebook"
    keywords = {k.arg: k.value for k in calls[0].keywords}
    step = keywords.pop("step")
    assert isinstance(step, ast.Attribute) and getattr(catalog, step.attr) == path.stem
    common = set(StepContext.create.__kwdefaults__) | {"legacy_org", "legacy_env", "new_org"}
    options = set(keywords) - common
    assert options <= set(catalog.options_of(path.stem).names()), options


def test_step_0_takes_its_parameters_or_a_context_like_every_step(tmp_path, monkeypatch):
    from runbook_lib.steps import preflight

    from runbook_lib import http

    once = http.RetryPolicy(total=0, connect=0, read=0, status=0)  # an unreachable host fails at once
    monkeypatch.setattr(http, "RetryPolicy", lambda: once)
    monkeypatch.setenv("ATLAS_TOKEN", "legacy-test-value")
    monkeypatch.setenv("TFE_TOKEN", "tfe-test-value")
    # Without a context (the demo's call): the whole organization, one ledger row `<org>/*`, hosts unreachable.
    report = preflight.survey(legacy_org="acme-legacy", new_org="acme", audit_root=str(tmp_path / "runs"), **HOSTS)
    assert not report.result.passed and "preflight checks failed" in report.result.summary
    with pytest.raises(Exception, match="00_preflight_inventory failed for acme-legacy/\\*"):
        report.conclude()
    rows = [(r.environment, r.step, r.action, r.status) for r in report._ctx.ledger.history()]
    assert rows == [("acme-legacy/*", catalog.PREFLIGHT, "run", "failed")]
    with pytest.raises(ConfigError, match="step 00_preflight_inventory has no option 'mapping'"):
        preflight.survey(legacy_org="acme-legacy", new_org="acme", audit_root=str(tmp_path / "r2"), mapping="x")
    with pytest.raises(ConfigError, match="either a context or its parameters"):
        preflight.survey(_create(tmp_path, catalog.PREFLIGHT), mapping_csv="x")


def test_in_a_notebook_a_misspelt_option_is_one_red_sentence_not_a_traceback(tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.user_ns.update(StepContext=StepContext, runs=str(tmp_path / "runs"), hosts=HOSTS)
        outcome = shell.run_cell('StepContext.create(step="05_commit_and_verify", legacy_org="acme-legacy", '
                                 'legacy_env="web", new_org="acme", audit_root=runs, wait_timout=60, **hosts)')
        assert isinstance(outcome.error_in_exec, ConfigError)  # the cell still fails (papermill stops there)
        shown = capsys.readouterr()
        text = shown.out + shown.err
        assert "has no option 'wait_timout' (did you mean 'wait_timeout'?)" in text
        assert "Traceback" not in text and "<module>" not in text
        assert not (tmp_path / "runs").exists()
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
