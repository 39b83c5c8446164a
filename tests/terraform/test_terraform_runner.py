"""The terraform choke point against the real binaries."""

from __future__ import annotations

import os
import stat

import pytest

from runbook_lib import terraform
from runbook_lib.cli import main as cli_main
from runbook_lib.errors import TerraformError


def test_both_generations_found_and_report_versions():
    assert terraform.version(terraform.terraform_011()) == "0.11.11"
    assert terraform.version(terraform.terraform_1x()).startswith("1.")
    assert terraform.terraform_for_version("0.11.11") == terraform.terraform_011()
    assert terraform.terraform_for_version("1.9.0") == terraform.terraform_1x()


def test_failure_raises_with_output_and_scrubs_secrets(tmp_path):
    secret = "abcd1234.atlasv1.supersecretvalue"
    (tmp_path / "main.tf").write_text('resource "null_resource" "x" {\n')
    with pytest.raises(TerraformError) as info:
        terraform.run(terraform.terraform_1x(), ["validate"], cwd=tmp_path, env={"ATLAS_TOKEN": secret})
    assert info.value.returncode not in (0, None)
    assert secret not in str(info.value)


def test_scrub_removes_token_values():
    text = "token is tok123456.atlasv1.zzz in output"
    assert terraform.scrub(text, {"TFE_TOKEN": "tok123456.atlasv1.zzz"}) == "token is [REDACTED] in output"


def test_null_provider_offline_with_both_generations(tmp_path):
    config = 'resource "null_resource" "a" {\n  triggers = { x = "1" }\n}\n'
    old = tmp_path / "old"
    old.mkdir()
    (old / "main.tf").write_text(config.replace("{ x = \"1\" }", "{\n    x = \"1\"\n  }"))
    plugins = terraform.plugin_dir_011(tmp_path / "plugins")
    terraform.run(terraform.terraform_011(), ["init", "-input=false", f"-plugin-dir={plugins}"], cwd=old)
    applied = terraform.run(terraform.terraform_011(), ["apply", "-auto-approve", "-input=false"], cwd=old)
    assert "1 added" in applied.stdout

    new = tmp_path / "new"
    new.mkdir()
    (new / "main.tf").write_text(config)
    rc = terraform.write_cli_config(tmp_path / "cli.tfrc", mirror_dir=terraform.provider_mirror_1x(tmp_path / "mirror"))
    assert stat.S_IMODE(os.stat(rc).st_mode) == 0o600
    env = {"TF_CLI_CONFIG_FILE": rc}
    terraform.run(terraform.terraform_1x(), ["init", "-input=false"], cwd=new, env=env)
    applied = terraform.run(terraform.terraform_1x(), ["apply", "-auto-approve", "-input=false"], cwd=new, env=env)
    assert "1 added" in applied.stdout


def test_doctor_reports_everything_found(capsys):
    assert cli_main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "0.11.11" in out and "MISSING" not in out
