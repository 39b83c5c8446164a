"""runbook_lib.hcl beyond the corpus: apply safety, arguments, CLI exit codes and output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runbook_lib import hcl
from runbook_lib.cli import main
from runbook_lib.errors import HclError

ATLAS = 'terraform {\n  backend "atlas" {\n    name = "legacy/app" # keep me\n  }\n}\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "main.tf").write_text(ATLAS)
    return tmp_path


def test_plan_writes_nothing_and_diff_shows_only_the_name(root):
    plan = hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod")
    assert (root / "main.tf").read_text() == ATLAS
    diff = plan.diff()
    assert '-    name = "legacy/app" # keep me\n' in diff and '+    name = "acme/app-prod" # keep me\n' in diff
    assert sum(line.startswith(("-", "+")) for line in diff.splitlines()) == 4  # 2 headers, 1 old, 1 new


def test_apply_refuses_a_file_changed_since_the_plan(root):
    plan = hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod")
    (root / "main.tf").write_text(ATLAS + "\n# edited meanwhile\n")
    with pytest.raises(HclError, match="changed since the plan"):
        hcl.apply_rewrite(plan)
    assert not (root / "main.tf.bak").exists()


def test_second_backup_does_not_overwrite_the_first(root):
    (root / "main.tf.bak").write_text("an older backup\n")
    result = hcl.apply_rewrite(hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod"))
    assert (root / "main.tf.bak").read_text() == "an older backup\n"
    assert (root / "main.tf.bak.1").read_text() == ATLAS
    assert result.backups == [str(root / "main.tf.bak.1")] and "backup" in result.safety


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


def test_without_backup_requires_a_clean_git_tree(root):
    plan = hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod")
    with pytest.raises(HclError, match="not tracked and unmodified in git"):
        hcl.apply_rewrite(plan, backup=False)
    _git(root, "init", "-q")
    _git(root, "add", "main.tf")
    _git(root, "commit", "-q", "-m", "init")
    result = hcl.apply_rewrite(plan, backup=False)
    assert list(result) == [str(root / "main.tf")] and result.backups == []
    assert "clean in git" in result.safety
    assert not (root / "main.tf.bak").exists()


def test_hostname_mismatch_on_an_existing_remote_backend_is_refused(tmp_path):
    (tmp_path / "main.tf").write_text('terraform {\n  backend "remote" {\n    hostname     = "old.example.com"\n'
                                      '    organization = "acme"\n    workspaces {\n      name = "app"\n    }\n  }\n}\n')
    with pytest.raises(HclError, match="on host old.example.com, not tfe.example.com"):
        hcl.plan_rewrite(tmp_path, from_="legacy/app", to="acme/app", target="remote", hostname="tfe.example.com")
    assert hcl.plan_rewrite(tmp_path, from_="legacy/app", to="acme/app", target="remote").is_empty
    cloud = hcl.plan_rewrite(tmp_path, from_="legacy/app", to="acme/app", target="cloud")
    assert 'cloud {' in cloud.files[0].new_text and '"old.example.com"' in cloud.files[0].new_text


def test_going_back_to_atlas_is_refused(tmp_path):
    (tmp_path / "main.tf").write_text('terraform {\n  cloud {\n    organization = "acme"\n'
                                      '    workspaces {\n      name = "app"\n    }\n  }\n}\n')
    with pytest.raises(HclError, match="going back to the atlas backend is not supported"):
        hcl.plan_rewrite(tmp_path, from_="legacy/app", to="acme/app", target="atlas")


@pytest.mark.parametrize("value", ["legacy", "a/b/c", "/app", "legacy/app env", ""])
def test_bad_references_are_refused(root, value):
    with pytest.raises(HclError, match="is not of the form <ORGANIZATION>/<NAME>"):
        hcl.plan_rewrite(root, from_=value, to="acme/app")


def test_unknown_target_is_refused(root):
    with pytest.raises(HclError, match="not one of atlas, remote, cloud"):
        hcl.plan_rewrite(root, from_="legacy/app", to="acme/app", target="s3")


def test_remote_state_already_moved_is_a_noop(tmp_path):
    (tmp_path / "main.tf").write_text('data "terraform_remote_state" "app" {\n  backend = "atlas"\n'
                                      '  config {\n    name = "acme/app-prod"\n  }\n}\n')
    plan = hcl.plan_remote_state_rewrite(tmp_path, from_="legacy/app", to="acme/app-prod")
    assert plan.is_empty and "already points at acme/app-prod" in plan.message


def test_find_columns_and_missing_directory(tmp_path):
    assert list(hcl.find_backends(tmp_path).columns) == hcl.FIND_COLUMNS
    assert list(hcl.find_remote_state_refs(tmp_path).columns) == hcl.REMOTE_STATE_COLUMNS
    with pytest.raises(HclError, match="is not a directory"):
        hcl.find_backends(tmp_path / "missing")


def test_non_utf8_file_is_refused(tmp_path):
    (tmp_path / "main.tf").write_bytes(b'# caf\xe9\nterraform {\n  backend "atlas" {\n    name = "legacy/app"\n  }\n}\n')
    with pytest.raises(HclError, match="is not UTF-8"):
        hcl.plan_rewrite(tmp_path, from_="legacy/app", to="acme/app")


def test_cli_show_prints_a_table(root, capsys):
    assert main(["backend", "show", str(root)]) == 0
    out = capsys.readouterr().out
    assert "legacy/app" in out and "start_line" in out


def test_cli_rewrite_previews_then_applies(root, capsys):
    assert main(["backend", "rewrite", str(root), "--from", "legacy/app", "--to", "acme/app-prod"]) == 0
    assert "preview only" in capsys.readouterr().out
    assert (root / "main.tf").read_text() == ATLAS
    assert main(["backend", "rewrite", str(root), "--from", "legacy/app", "--to", "acme/app-prod", "--apply"]) == 0
    assert 'name = "acme/app-prod" # keep me' in (root / "main.tf").read_text()
    assert (root / "main.tf.bak").read_text() == ATLAS
    capsys.readouterr()
    assert main(["backend", "rewrite", str(root), "--from", "legacy/app", "--to", "acme/app-prod", "--apply"]) == 0
    assert "already points at acme/app-prod" in capsys.readouterr().out


def test_cli_refusal_exits_1_with_the_reason(root, capsys):
    assert main(["backend", "rewrite", str(root), "--from", "other/app", "--to", "acme/app-prod", "--apply"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tfe-runbook: error: ") and "not the expected legacy organization 'other'" in err
    assert (root / "main.tf").read_text() == ATLAS


def test_cli_add_legacy(tmp_path, capsys):
    (tmp_path / "main.tf").write_text('variable "x" {}\n')
    assert main(["backend", "add-legacy", str(tmp_path), "--from", "legacy/app", "--apply"]) == 0
    assert (tmp_path / "legacy_backend.tf").read_text() == ('terraform {\n  backend "atlas" {\n'
                                                           '    name = "legacy/app"\n  }\n}\n')
    assert main(["backend", "add-legacy", str(tmp_path), "--from", "legacy/app"]) == 0
    assert "already points at legacy/app" in capsys.readouterr().out
