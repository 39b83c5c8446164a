"""The sandbox's VCS provider: bare git repositories whose pushes notify the sandbox, and what a push starts.

Repositories are bare repositories at `<data>/git/<org>/<repo>.git`, identified in both APIs as
`<org>/<repo>`. Each has a `post-receive` hook (installed here, for seeded repositories and for any
created later) that POSTs every updated ref to `POST /_sandbox/vcs/push`, as a VCS provider's webhook
would, and waits for the answer, so the runs exist when `git push` returns. The webhook is not
reachable with an API token: it needs the per-sandbox hook secret (`<data>/vcs-hook.json`, mode 0600)
in the `X-Sandbox-Hook-Secret` header.

What a push to `refs/heads/<branch>` starts (see docs/sandbox-vcs-runs.md):
- a legacy run in every environment still linked to that repository and branch whose working
  directory the push touched (or that builds the repository root);
- a configuration version (the commit as a tar.gz, with ingress attributes) and a run in every
  workspace linked to that repository and branch (branch "" = the default branch), honouring
  `working-directory`, `trigger-prefixes` and `file-triggers-enabled`, and `queue-all-runs`: with it
  false (the default), a push queues nothing until at least one run was queued otherwise (workspaces.mdx
  `queue-all-runs`: "runs triggered by a VCS change will not be queued until at least one run is manually
  queued").
"Touched" comes from `git diff --name-only before after`; a new branch (before = 000...0) counts as
touching everything. Tags and branch deletions start nothing.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib import git
from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store import Store
from runbook_lib.sandbox.wire import Request, Response, json_response

HOOK_CONFIG_FILE = "vcs-hook.json"
HOOK_HEADER = "X-Sandbox-Hook-Secret"
WEBHOOK_PATH = "/_sandbox/vcs/push"
ZERO_SHA = "0" * 40
_HOOK_MARKER = "# tfe-runbook sandbox post-receive hook"

# The hook runs under git, outside this process: standard library only, no proxy (the sandbox is local),
# and a non-zero exit would only print a warning, so failures are reported on stderr instead.
_HOOK_TEMPLATE = '''#!{python} -IS
{marker}: tells the sandbox about each pushed ref, as a VCS provider's webhook would.
import json, ssl, sys, urllib.error, urllib.request

CONFIG = {config!r}
IDENTIFIER = {identifier!r}

with open(CONFIG) as handle:
    cfg = json.load(handle)
handlers = [urllib.request.ProxyHandler({{}})]
if cfg.get("cafile"):
    handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cfg["cafile"])))
opener = urllib.request.build_opener(*handlers)
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 3:
        continue
    before, after, ref = parts
    body = json.dumps({{"repository": IDENTIFIER, "ref": ref, "before": before, "after": after}}).encode()
    request = urllib.request.Request(cfg["url"] + {path!r}, data=body, method="POST",
                                     headers={{"Content-Type": "application/json", {header!r}: cfg["secret"]}})
    try:
        with opener.open(request, timeout=120) as response:
            answer = json.loads(response.read() or b"{{}}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"sandbox webhook failed for {{ref}}: {{exc}}", file=sys.stderr)
        continue
    runs = answer.get("runs", [])
    print(f"sandbox: {{ref}} started {{len(runs)}} run(s)" + "".join(
        f"\\n  {{r['type']}} {{r['target']}}: {{r['id']}}" for r in runs))
'''


def git_root(data_dir: Path) -> Path:
    """`<data>/git`, where the bare repositories live."""
    return Path(data_dir) / "git"


def repository_path(data_dir: Path, identifier: str) -> Path:
    """The bare repository of an identifier (`org/repo` -> `<data>/git/org/repo.git`).

    Raises:
        NotFoundError: the identifier is not `org/repo` (no path tricks).
    """
    parts = identifier.split("/")
    if len(parts) != 2 or not all(p and p not in (".", "..") for p in parts):
        raise errors.NotFoundError()
    return git_root(data_dir) / parts[0] / f"{parts[1]}.git"


def write_hook_config(data_dir: Path, url: str, cafile: str | None) -> str:
    """Write `<data>/vcs-hook.json` (url, CA, secret; mode 0600), keeping the secret of an earlier start.

    Args:
        data_dir: the sandbox data directory.
        url: the sandbox's base URL as hooks should reach it (it may change across restarts).
        cafile: the CA certificate hooks must trust for HTTPS, or None.

    Returns:
        The hook secret.
    """
    path = Path(data_dir) / HOOK_CONFIG_FILE
    secret = ""
    if path.exists():
        try:
            secret = json.loads(path.read_text()).get("secret") or ""
        except (OSError, ValueError):
            secret = ""  # unreadable: a new secret; hooks read the file on every push anyway
    secret = secret or secrets.token_urlsafe(32)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "cafile": cafile, "secret": secret}, handle)
    os.replace(tmp, path)
    return secret


def hook_secret(data_dir: Path) -> str:
    """The hook secret of a data directory ("" when no hook configuration was written yet)."""
    try:
        return json.loads((Path(data_dir) / HOOK_CONFIG_FILE).read_text()).get("secret") or ""
    except (OSError, ValueError):
        return ""


def install_hook(data_dir: Path, bare: Path) -> bool:
    """Install (or refresh) the `post-receive` hook of one bare repository.

    Returns:
        True when the hook was written, False when it was already current.
    """
    identifier = f"{bare.parent.name}/{bare.name.removesuffix('.git')}"
    text = _HOOK_TEMPLATE.format(python=sys.executable, marker=_HOOK_MARKER,
                                 config=str(Path(data_dir).resolve() / HOOK_CONFIG_FILE), identifier=identifier,
                                 path=WEBHOOK_PATH, header=HOOK_HEADER)
    hook = bare / "hooks" / "post-receive"
    if hook.exists() and hook.read_text() == text:
        return False
    hook.parent.mkdir(parents=True, exist_ok=True)
    tmp = hook.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, hook)  # atomic: a concurrent push runs the old hook or the new one, never half of one
    return True


def install_hooks(data_dir: Path) -> list[str]:
    """Install the hook in every bare repository under `<data>/git/<org>/<repo>.git`.

    Returns:
        The identifiers whose hook was written now.
    """
    written = []
    root = git_root(data_dir)
    if not root.is_dir():
        return written
    for bare in sorted(root.glob("*/*.git")):
        if (bare / "HEAD").is_file() and install_hook(data_dir, bare):
            written.append(f"{bare.parent.name}/{bare.name.removesuffix('.git')}")
    return written


def create_repository(data_dir: Path, identifier: str, default_branch: str = "master") -> Path:
    """Create an empty bare repository for `identifier`, with the hook, and return its path.

    Raises:
        NotFoundError: the identifier is not `org/repo`.
        GitError: git failed.
    """
    bare = repository_path(data_dir, identifier)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git.run(["init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(bare)])
    install_hook(data_dir, bare)
    return bare


# --- reading a pushed commit -------------------------------------------------------------------------------

def default_branch(bare: Path) -> str:
    """The branch a bare repository's HEAD names (its default branch)."""
    return git.run(["symbolic-ref", "--short", "HEAD"], bare).strip()


def branch_head(bare: Path, branch: str) -> str:
    """The commit a branch points at.

    Raises:
        GitError: no such branch.
    """
    return git.run(["rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"], bare).strip()


def changed_files(bare: Path, before: str, after: str) -> list[str] | None:
    """Paths a push changed, or None when everything counts as changed (a new branch)."""
    if before == ZERO_SHA:
        return None
    return [line for line in git.run(["diff", "--name-only", before, after], bare).splitlines() if line]


def commit_message(bare: Path, sha: str) -> str:
    """The full message of a commit."""
    return git.run(["log", "-1", "--format=%B", sha], bare).strip()


def commit_author(bare: Path, sha: str) -> str:
    """The committer name of a commit (the username a run search by `search[user]` matches)."""
    return git.run(["log", "-1", "--format=%cn", sha], bare).strip()


def archive(bare: Path, sha: str) -> bytes:
    """The tree of a commit as a .tar.gz (what TFE ingests as a configuration version).

    Raises:
        GitError: unknown commit.
    """
    # Not runbook_lib.git.run: the archive is binary, and that helper decodes text.
    proc = subprocess.run(["git", "archive", "--format=tar.gz", sha], cwd=str(bare), capture_output=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise git.GitError(f"git archive {sha} failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    return proc.stdout


def touches(changed: list[str] | None, directories: list[str]) -> bool:
    """Whether a push that changed `changed` touches any of `directories` ("" = the repository root).

    Args:
        changed: changed paths, or None for "everything".
        directories: working directory and trigger prefixes.
    """
    if changed is None:
        return True
    dirs = [d.strip("/") for d in directories]
    if any(d == "" for d in dirs):
        return True  # the root is built from the whole repository: any push counts
    return any(path == d or path.startswith(d + "/") for path in changed for d in dirs)


# --- what a push starts ------------------------------------------------------------------------------------

@dataclass
class PushResult:
    """The runs one pushed ref started."""

    runs: list[dict[str, str]] = field(default_factory=list)


_PROVIDER_SOURCES = (("github", "github"), ("gitlab", "gitlab"), ("bitbucket", "bitbucket"), ("ado", "ado"))


def _cv_source(store: Store, ws: dict[str, Any]) -> str:
    client = store.oauth_token_client(ws["vcs_oauth_token_id"]) if ws["vcs_oauth_token_id"] else None
    provider = (client or {}).get("service_provider") or ""
    for prefix, source in _PROVIDER_SOURCES:
        if provider.startswith(prefix):
            return source
    return "tfe-vcs"


def workspace_triggered(ws: dict[str, Any], changed: list[str] | None, patterns: list[str] | tuple[str, ...] = ()) -> bool:
    """TFE's automatic-run rule for one workspace and one push.

    File triggers off: every push runs. On, with trigger patterns: a push runs when a changed file matches one
    of them (workspaces.mdx `trigger-patterns`: glob patterns "always appended to the root directory of the
    repository"; `**` crosses directories, `*` does not). On, without: a push runs when it touches the working
    directory or a trigger prefix; a workspace at the repository root runs on every push.
    """
    if not ws["file_triggers_enabled"]:
        return True
    if patterns:
        return changed is None or any(_glob(p).fullmatch(path) for p in patterns for path in changed)
    return touches(changed, [ws["working_directory"] or "", *json.loads(ws["trigger_prefixes"] or "[]")])


def _glob(pattern: str) -> re.Pattern[str]:
    """A trigger pattern as a regex over repository paths (`**/` any directories, `**` anything, `*` and `?`
    within one path segment)."""
    out, text, i = [], pattern.lstrip("/"), 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out))


def vcs_runs_queue(store: Store, ws: dict[str, Any]) -> bool:
    """Whether a VCS push may queue a run in `ws`: `queue-all-runs` is set, or a run was already queued
    other than by a push (workspaces.mdx, `data.attributes.queue-all-runs`)."""
    if ws["queue_all_runs"]:
        return True
    return any(run["source"] != VCS_RUN_SOURCE for run in store.list_runs(ws["id"]))


def legacy_ingress_metadata(repository: str, branch: str, sha: str) -> dict[str, str]:
    """The metadata of a configuration version a linked legacy environment ingressed from a push.

    The keys of the 2018 configurations page's sample (`git_branch`, `remote_type`, `remote_slug`;
    configurations.html.md at 98a35d246), the repository as the slug; `commit_sha` is the sandbox's own
    (the page calls metadata "arbitrary"; the legacy runs' `ATLAS_CONFIGURATION_VERSION_GITHUB_COMMIT_SHA`
    shows the host knew the commit). No working directory: nothing documents one in the metadata.
    """
    return {"git_branch": branch, "remote_type": "github", "remote_slug": repository, "commit_sha": sha}


#: The `source` of the runs a push queues (a VCS-ingressed configuration version).
VCS_RUN_SOURCE = "tfe-configuration-version"


def ingest_commit(store: Store, ws: dict[str, Any], bare: Path, *, identifier: str, branch: str, sha: str,
                  message: str, default: str) -> dict[str, Any]:
    """Create a configuration version holding a commit (tar.gz and ingress attributes) for a workspace.

    Returns:
        The configuration version row (status `uploaded`).
    """
    ingress = {"branch": branch, "clone-url": str(bare), "commit-message": message, "commit-sha": sha,
               "commit-url": f"{bare}#{sha}", "compare-url": None, "identifier": identifier,
               "is-pull-request": False, "on-default-branch": branch == default, "pull-request-number": None,
               "pull-request-title": None, "pull-request-body": None, "pull-request-url": None, "tag": None,
               # the sandbox's git host has no accounts: whoever committed the head is who pushed it
               "sender-username": commit_author(bare, sha), "sender-avatar-url": None, "sender-html-url": None}
    cv = store.create_configuration_version(ws["id"], auto_queue_runs=True, source=_cv_source(store, ws),
                                            ingress=ingress)
    store.upload_configuration(cv["id"], archive(bare, sha))
    cv["status"] = "uploaded"
    return cv


def trigger_push(store: Store, data_dir: Path, *, repository: str, ref: str, before: str,
                 after: str) -> PushResult:
    """Start the runs a push of `ref` to `repository` triggers (inside the caller's transaction).

    Args:
        store: the sandbox store.
        data_dir: the sandbox data directory (repositories under `<data>/git`).
        repository: `org/repo`.
        ref: the pushed ref (`refs/heads/<branch>`; other refs start nothing).
        before, after: the ref's old and new commit (000...0 for a new or deleted branch).

    Returns:
        PushResult naming every run created.

    Raises:
        NotFoundError: no such repository.
        GitError: git could not read the pushed commits.
    """
    result = PushResult()
    if not ref.startswith("refs/heads/") or after == ZERO_SHA:
        return result
    branch = ref.removeprefix("refs/heads/")
    bare = repository_path(data_dir, repository)
    if not (bare / "HEAD").is_file():
        raise errors.NotFoundError()
    default = default_branch(bare)
    changed = changed_files(bare, before, after)
    message = commit_message(bare, after)
    title = message.splitlines()[0] if message else ""
    for env in store.environments_linked_to(repository):
        working_dir = env["vcs_working_directory"] or ""
        if (env["vcs_branch"] or default) != branch or not touches(changed, [working_dir]):
            continue
        store.create_legacy_config_version(env["id"], legacy_ingress_metadata(repository, branch, after))
        run = store.create_legacy_run(env["id"], status="pending", source="vcs", commit_sha=after, message=title)
        result.runs.append({"type": "legacy-runs", "id": run["id"], "target": f"{env['org']}/{env['name']}"})
    for ws in store.workspaces_linked_to(repository):
        if (ws["vcs_branch"] or default) != branch or not workspace_triggered(
                ws, changed, store.workspace_settings(ws["id"])["trigger-patterns"]):
            continue
        if not vcs_runs_queue(store, ws):
            continue
        cv = ingest_commit(store, ws, bare, identifier=repository, branch=branch, sha=after, message=message,
                           default=default)
        run = store.create_run(ws, None, cv_id=cv["id"], message=title or f"Triggered by a push to {branch}",
                               source=VCS_RUN_SOURCE)
        result.runs.append({"type": "runs", "id": run["id"], "target": f"{ws['org']}/{ws['name']}"})
    return result


def queue_on_link(store: Store, data_dir: Path, ws: dict[str, Any]) -> dict[str, Any] | None:
    """The run TFE queues when a workspace is linked to a repository with `queue-all-runs` on: the head of its
    branch is ingested and planned "immediately after workspace creation" (workspaces.mdx
    `data.attributes.queue-all-runs`); a later PATCH that links a repository does the same. The run waits
    behind the workspace's lock like any other (run-states.mdx `pending`). None when nothing is queued
    (`queue-all-runs` off, or the repository or branch does not exist in the sandbox).
    """
    if not ws["vcs_identifier"] or not ws["queue_all_runs"]:
        return None
    try:
        bare = repository_path(data_dir, ws["vcs_identifier"])
        if not (bare / "HEAD").is_file():
            return None
        default = default_branch(bare)
        branch = ws["vcs_branch"] or default
        sha = branch_head(bare, branch)
    except (git.GitError, errors.SandboxError, OSError):
        return None  # an empty repository or a branch that does not exist yet: the first push will queue
    message = commit_message(bare, sha)
    cv = ingest_commit(store, ws, bare, identifier=ws["vcs_identifier"], branch=branch, sha=sha, message=message,
                       default=default)
    title = message.splitlines()[0] if message else ""
    return store.create_run(ws, None, cv_id=cv["id"], message=title or f"Triggered by linking {ws['vcs_identifier']}",
                            source=VCS_RUN_SOURCE)


def push_webhook(req: Request) -> Response:
    """`POST /_sandbox/vcs/push` (SANDBOX-DEFINED): a repository's hook reports a pushed ref.

    Body `{"repository": "org/repo", "ref": "refs/heads/main", "before": sha, "after": sha}`; header
    `X-Sandbox-Hook-Secret`. 200 `{"runs": [{"type", "id", "target"}]}` once the runs exist.

    Raises:
        UnauthorizedError: the hook secret is missing or wrong (API tokens are not accepted here).
        UnprocessableError: a malformed body.
        NotFoundError: no such repository.
    """
    expected = hook_secret(req.app.data_dir) if req.app is not None else ""
    given = req.headers.get(HOOK_HEADER) or ""
    if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise errors.UnauthorizedError("the VCS webhook needs the sandbox's hook secret")
    doc = req.json()
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) and doc.get(k)
                                            for k in ("repository", "ref", "before", "after")):
        raise errors.UnprocessableError("repository, ref, before and after are required strings", pointer="/")
    try:
        result = trigger_push(req.store, req.app.data_dir, repository=doc["repository"], ref=doc["ref"],
                              before=doc["before"], after=doc["after"])
    except git.GitError as exc:
        raise errors.UnprocessableError(f"cannot read the pushed commits: {exc}", pointer="/after") from exc
    return json_response({"repository": doc["repository"], "ref": doc["ref"], "runs": result.runs})
