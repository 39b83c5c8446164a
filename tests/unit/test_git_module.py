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
