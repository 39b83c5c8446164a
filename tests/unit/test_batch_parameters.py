"""`--param` and `--batch` are checked and typed before a batch writes anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook_lib import mapping
from runbook_lib.batch import STEPS, BatchResult, BatchRunner, check_batch_name, coerce_parameter
from runbook_lib.cli import main as cli_main
from runbook_lib.errors import RunbookError
from runbook_lib.ledger import Ledger

ROWS = mapping.propose("acme-legacy", ["network-prod"], "acme")
TOKEN = "AbCdEf123456.atlasv1.ZyXwVuTsRqPoNmLkJiHgFeDcBa09"
GITHUB = "ghp_" + "Zq8aB" * 8


def runner(tmp_path: Path, **parameters) -> BatchRunner:
    return BatchRunner(ROWS, STEPS, mode="plan", out=tmp_path / "runs", batch_id="b", parameters=parameters)


@pytest.mark.parametrize("given, expected", [("False", False), ("false", False), ("0", False), ("no", False),
                                             ("True", True), ("TRUE", True), ("1", True), (False, False)])
def test_boolean_parameters_are_booleans(tmp_path, given, expected):
    assert runner(tmp_path, accept_empty_sensitive=given, recover=given).parameters == {
        "accept_empty_sensitive": expected, "recover": expected}


def test_int_parameter_is_an_int_and_strings_stay_strings(tmp_path):
    params = runner(tmp_path, wait_timeout="240", migration_path="cli", commit_branch="0").parameters
    assert params == {"wait_timeout": 240, "migration_path": "cli", "commit_branch": "0"}


@pytest.mark.parametrize("name, value, words", [("recover", "maybe", "True or False"),
                                                ("wait_timeout", "ten", "a whole number"),
                                                ("wait_timeout", "1.5", "a whole number")])
def test_a_value_that_does_not_fit_its_type_is_refused(tmp_path, name, value, words):
    with pytest.raises(RunbookError, match=f"--param {name} must be {words}"):
        runner(tmp_path, **{name: value})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, instead", [("mode", "--mode"), ("batch_id", "--batch"), ("confirm", "--confirm-file"),
                                           ("legacy_env", "--mapping"), ("workspace", "--mapping"),
                                           ("audit_root", "--out"), ("ledger_path", "--out"),
                                           ("interactive", "--confirm-file")])
def test_parameters_the_batch_sets_are_refused_naming_what_to_use(tmp_path, name, instead):
    with pytest.raises(RunbookError, match=f"--param {name} is set by the batch itself: use .*{instead}"):
        runner(tmp_path, **{name: "x"})


@pytest.mark.parametrize("name, value", [("tfe_token_var", TOKEN), ("legacy_token_var", GITHUB),
                                         ("vcs_token_var", "glpat-abcdefghijklmnopqrstu"),
                                         ("vcs_token_var", "Xk9mQ2pL7vR4tY8wZ3nB"), ("commit_branch", TOKEN),
                                         ("tfe_token_var", "not a name"), ("sensitive_var_prefix", "TFE-VAR-")])
def test_token_shaped_or_invalid_variable_names_are_refused_without_echo(tmp_path, name, value):
    with pytest.raises(RunbookError, match=f"--param {name}") as caught:
        runner(tmp_path, **{name: value})
    assert value not in str(caught.value)


def test_cli_refuses_a_token_before_any_notebook_is_written(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    mapping.write_csv(ROWS, csv)
    code = cli_main(["run", "--mapping", str(csv), "--out", str(tmp_path / "runs"), "--param", f"tfe_token_var={TOKEN}"])
    err = capsys.readouterr().err
    assert code == 1 and TOKEN not in err and "NAME" in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit) as caught:  # a token pasted without a name is not echoed either
        cli_main(["run", "--mapping", str(csv), "--param", TOKEN])
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ".hidden", "-x", "a\\b", "", "x..y"])
def test_batch_is_a_name_not_a_path(tmp_path, name, capsys):
    with pytest.raises(RunbookError, match="--batch must be a name"):
        check_batch_name(name)
    csv = tmp_path / "m.csv"
    mapping.write_csv(ROWS, csv)
    if name:
        assert cli_main(["run", "--mapping", str(csv), "--out", str(tmp_path / "runs"), f"--batch={name}"]) == 1
        assert "--batch must be a name" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_coerce_leaves_untyped_values_alone():
    assert coerce_parameter("x", "abc", None) == "abc"


def test_manifest_records_only_parameters_a_notebook_was_given(tmp_path):
    r = BatchRunner(ROWS, STEPS[2:4], mode="plan", out=tmp_path / "runs", batch_id="b",
                    parameters={"accept_empty_sensitive": "false", "cli_target": "remote"})
    r.batch_dir.mkdir(parents=True)
    r._parameters(ROWS[0], "02_create_workspaces")  # only step 2 ran; step 3 (cli_target) was skipped
    r._write_evidence(BatchResult(r.batch_dir), Ledger(r.ledger_path, batch_id="b"))
    recorded = json.loads((r.batch_dir / "manifest.json").read_text())["parameters"]
    assert recorded["accept_empty_sensitive"] is False and "cli_target" not in recorded


@pytest.mark.parametrize("name", ["git_base_url", "vcs_http_url"])
def test_a_url_parameter_with_a_credential_is_refused_before_any_notebook_is_written(tmp_path, capsys, name):
    value = "https://oauth2:hunter2-pass@gitlab.example.com/acme"
    with pytest.raises(RunbookError, match=f"--param {name} carries a credential in its URL") as caught:
        runner(tmp_path, **{name: value})
    assert "hunter2" not in str(caught.value)
    csv = tmp_path / "m.csv"
    mapping.write_csv(ROWS, csv)
    code = cli_main(["run", "--mapping", str(csv), "--out", str(tmp_path / "runs"), "--param", f"{name}={value}"])
    assert code == 1 and "hunter2" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
