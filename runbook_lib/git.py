"""Git, for the steps that work in a checkout (3 on the CLI path, 5): the one place git is started.

Repositories are addressed by the identifier the APIs use (`<org>/<repo>`); the clone URL is
`<git base>/<org>/<repo>.git`, where the base comes from the `git_base_url` parameter or the
environment variable TFE_RUNBOOK_GIT_BASE (an SSH/HTTPS prefix, or a local folder / file:// URL of
bare repositories, as the rehearsal sandbox has). Credentials are git's business (SSH agent,
credential helper), never the runbook's.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from runbook_lib.errors import ConfigError, RunbookError

GIT_BASE_VAR = "TFE_RUNBOOK_GIT_BASE"
AUTHOR = ("tfe-runbook", "tfe-runbook@localhost")


class GitError(RunbookError):
    """A git command failed; the message carries its stderr tail."""


class GitMissing(GitError):
    """git itself cannot be started (not installed, not on PATH)."""


def repo_url(identifier: str, base: str = "") -> str:
    """The clone URL of a repository identifier (`org/repo`).

    Raises:
        ConfigError: no git base configured.
    """
    base = (base or os.environ.get(GIT_BASE_VAR, "")).rstrip("/")
    if not base:
        raise ConfigError(f"no git base URL: set the git_base_url parameter or ${GIT_BASE_VAR} "
                          f"(like git@github.com: or https://git.example.com) so {identifier} can be cloned.")
    return f"{base}/{identifier}.git"


def run(args: Sequence[str], cwd: str | Path | None = None, *, timeout: float = 300) -> str:
    """Run `git args...`; returns stdout.

    Raises:
        GitError: non-zero exit or timeout.
    """
    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", AUTHOR[0])
    env.setdefault("GIT_AUTHOR_EMAIL", AUTHOR[1])
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        proc = subprocess.run(["git", *args], cwd=str(cwd) if cwd else None, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise GitMissing(f"git cannot be started ({exc.strerror}): install git or put it on PATH") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise GitError(f"git {' '.join(args[:2])} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def clone(url: str, dest: str | Path, branch: str = "") -> Path:
    """Clone `url` into `dest` (a fresh folder), on `branch` when given."""
    args = ["clone", "--quiet"] + (["--branch", branch] if branch else []) + [url, str(dest)]
    run(args)
    return Path(dest)


def head(cwd: str | Path, *, short: bool = False) -> str:
    """The commit sha of HEAD (abbreviated when `short`)."""
    return run(["rev-parse"] + (["--short"] if short else []) + ["HEAD"], cwd).strip()


def head_or_none(cwd: str | Path) -> str | None:
    """The commit sha of HEAD, or None when `cwd` is not in a checkout or git is not installed."""
    try:
        return run(["rev-parse", "HEAD"], cwd, timeout=10).strip() or None
    except GitError:  # GitMissing included: an install without git has no commit to report
        return None


def tracked_and_clean(path: str | Path) -> bool:
    """Whether a file is tracked by git and has no uncommitted change (False outside a checkout).

    Raises:
        GitError: git cannot be started.
    """
    path = Path(path)
    try:
        run(["ls-files", "--error-unmatch", "--", path.name], path.parent, timeout=60)
    except GitMissing:
        raise
    except GitError:
        return False
    return not run(["status", "--porcelain", "--", path.name], path.parent, timeout=60).strip()


def current_branch(cwd: str | Path) -> str:
    return run(["rev-parse", "--abbrev-ref", "HEAD"], cwd).strip()


def commit_all(cwd: str | Path, message: str) -> str | None:
    """Commit every change in the work tree; returns the new sha, or None when nothing changed."""
    run(["add", "--all"], cwd)
    if not run(["status", "--porcelain"], cwd).strip():
        return None
    run(["commit", "--quiet", "-m", message], cwd)
    return head(cwd)


def push(cwd: str | Path, branch: str, remote: str = "origin", *, attempts: int = 5,
         sleep: Callable[[float], None] = time.sleep) -> str:
    """Push HEAD to `remote`'s `branch`; returns the sha that landed there.

    Environments of one monorepo share a branch, and a batch pushes them at once: when the branch
    moved since the clone, the local commits are rebased onto it and pushed again (up to `attempts`
    times). Each environment changes files of its own working directory, so the rebase is clean; one
    that conflicts is aborted, leaving nothing half-done, and named.

    Raises:
        GitError: the push failed for another reason, the rebase conflicts, or the branch kept moving.
    """
    for attempt in range(1, attempts + 1):
        try:
            run(["push", "--quiet", remote, f"HEAD:refs/heads/{branch}"], cwd)
            return head(cwd)
        except GitMissing:
            raise
        except GitError as exc:
            failure = exc
        if not _remote_moved(cwd, branch, remote):
            lock_race = "cannot lock ref" in str(failure) or ".lock" in str(failure)
            if not lock_race or attempt == attempts:
                raise failure  # not a race with another push: a refusal, a hook, access
            sleep(0.2 * attempt)  # another push holds the ref's lock: it ends in a moment
            continue
        try:
            run(["rebase", "--quiet", "FETCH_HEAD"], cwd)
        except GitError as exc:
            conflicts = run(["diff", "--name-only", "--diff-filter=U"], cwd).split()
            run(["rebase", "--abort"], cwd)
            raise GitError(f"{branch} of {remote} moved since the clone and this change conflicts with what was "
                           f"pushed there (in {', '.join(conflicts) or 'the rebased commits'}); nothing was pushed: "
                           f"run the step again, it starts from the new branch head") from exc
    raise GitError(f"{branch} of {remote} kept moving: {attempts} pushes were overtaken by others; nothing "
                   f"was pushed, run the step again (the last refusal: {failure})") from failure


def _remote_moved(cwd: str | Path, branch: str, remote: str) -> bool:
    """Whether `remote`'s `branch` has commits HEAD lacks (fetched into FETCH_HEAD)."""
    try:
        run(["fetch", "--quiet", remote, f"refs/heads/{branch}"], cwd)
    except GitError:
        return False  # the branch does not exist there (yet): nothing to rebase onto
    try:
        run(["merge-base", "--is-ancestor", "FETCH_HEAD", "HEAD"], cwd)
    except GitError:
        return True
    return False
