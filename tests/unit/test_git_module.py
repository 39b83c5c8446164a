"""git is started from runbook_lib.git alone; its answers for a tracked, a modified and a foreign file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runbook_lib import git


@pytest.fixture
def checkout(tmp_path):
    git.run(["init", "--quiet", str(tmp_path)])
    (tmp_path / "main.tf").write_text("terraform {}\n")
    assert git.commit_all(tmp_path, "first") is not None
    return tmp_path


def test_tracked_and_clean(checkout):
    assert git.tracked_and_clean(checkout / "main.tf")
    (checkout / "main.tf").write_text("terraform { }\n")
    assert not git.tracked_and_clean(checkout / "main.tf")
    (checkout / "new.tf").write_text("\n")
    assert not git.tracked_and_clean(checkout / "new.tf")


def test_head_and_head_or_none(checkout, tmp_path_factory):
    sha = git.head(checkout)
    assert re.fullmatch(r"[0-9a-f]{40}", sha) and sha.startswith(git.head(checkout, short=True))
    assert git.head_or_none(checkout) == sha
    assert git.head_or_none(tmp_path_factory.mktemp("not-a-checkout")) is None


def test_missing_git_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on this PATH
    with pytest.raises(git.GitMissing, match="install git"):
        git.run(["--version"])
    assert git.head_or_none(tmp_path) is None


def test_only_the_git_module_starts_git():
    package = Path(git.__file__).parent
    starts = re.compile(r"""\[\s*["']git["']""")
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if "sandbox" not in p.parts and p.name != "git.py" and starts.search(p.read_text())]
    assert offenders == []


@pytest.fixture
def shared_branch(tmp_path):
    """A bare repository with two environments' folders and two clones of it (two batch workers)."""
    bare = tmp_path / "infra.git"
    git.run(["init", "--quiet", "--bare", "--initial-branch=master", str(bare)])
    seed = git.clone(str(bare), tmp_path / "seed")
    for env in ("network", "web"):
        (seed / env).mkdir()
        (seed / env / "main.tf").write_text(f'terraform {{ backend "atlas" {{ name = "acme-legacy/{env}" }} }}\n')
    git.commit_all(seed, "two environments")
    git.push(seed, "master")
    return bare, git.clone(str(bare), tmp_path / "a"), git.clone(str(bare), tmp_path / "b")


def _change(clone, env, message):
    """One environment's change in a clone, committed (not pushed)."""
    (clone / env / "main.tf").write_text(f"# {message}\n")
    git.commit_all(clone, message)


def _log(bare):
    return git.run(["log", "--format=%s", "master"], bare).split("\n")[:-1]


def test_a_push_overtaken_by_another_environment_is_rebased_and_lands(shared_branch):
    bare, a, b = shared_branch
    _change(a, "network", "move network")
    _change(b, "web", "move web")
    assert git.push(a, "master") == git.head(a)
    landed = git.push(b, "master")  # master moved since b's clone: rebased onto it, pushed again
    assert landed == git.head(b) == git.run(["rev-parse", "master"], bare).strip()
    assert _log(bare) == ["move web", "move network", "two environments"]
    assert (b / "network" / "main.tf").read_text() == "# move network\n"  # both changes on the branch


def test_a_conflicting_push_is_refused_whole_and_named(shared_branch):
    bare, a, b = shared_branch
    _change(a, "web", "from a")
    _change(b, "web", "from b")
    git.push(a, "master")
    mine = git.head(b)
    with pytest.raises(git.GitError, match=r"moved since the clone and this change conflicts .*\(in web/main.tf\); nothing was pushed: run the step again"):
        git.push(b, "master")
    assert _log(bare) == ["from a", "two environments"]  # nothing of b landed
    assert git.head(b) == mine and not (b / ".git" / "rebase-merge").exists()  # the rebase was aborted


def test_a_refused_push_that_is_not_a_race_is_not_retried(shared_branch, tmp_path):
    bare, a, _ = shared_branch
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    _change(a, "web", "change")
    sleeps = []
    with pytest.raises(git.GitError, match="protected branch"):
        git.push(a, "master", sleep=sleeps.append)
    assert sleeps == [] and _log(bare) == ["two environments"]
