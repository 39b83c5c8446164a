"""Helpers for the VCS/run tests: real git clones and pushes, migrated workspaces, waiting for runs.

How a test (or the runbook's step 5) waits for a run: poll `GET /api/v2/runs/:id` until its status is
final or `planned` (awaiting confirmation). A legacy run: the legacy API documents no way to list or read runs
(the operator saw them in the legacy UI), so these tests read the sandbox's store in-process. The push
itself returns only after the sandbox created the runs (the hook waits for the webhook's answer), so
"no run was created" can be checked right after `git push`.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.sandbox import Sandbox

SETTLED = ("planned", "planned_and_finished", "applied", "errored", "discarded", "canceled", "force_canceled")
GIT_ENV = {"GIT_AUTHOR_NAME": "Rehearsal", "GIT_AUTHOR_EMAIL": "rehearsal@acme.example",
           "GIT_COMMITTER_NAME": "Rehearsal", "GIT_COMMITTER_EMAIL": "rehearsal@acme.example",
           "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd`; fail the test with its stderr on a non-zero exit."""
    proc = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=str(cwd), env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc


class Checkout:
    """A clone of one sandbox repository (by plain path, as `SANDBOX_GIT_ROOT` gives it)."""

    def __init__(self, sandbox: Sandbox, identifier: str, dest: Path, branch: str = "") -> None:
        self.url = f"{sandbox.env['SANDBOX_GIT_ROOT']}/{identifier}.git"
        self.path = dest
        git(dest.parent, "clone", "-q", *(["--branch", branch] if branch else []), self.url, str(dest))
        self.branch = branch or git(dest, "symbolic-ref", "--short", "HEAD").stdout.strip()  # empty clones too

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def push(self, message: str) -> tuple[str, str]:
        """Commit everything and push; returns (sha, push output with the hook's `remote:` lines)."""
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        sha = git(self.path, "rev-parse", "HEAD").stdout.strip()
        pushed = git(self.path, "push", "origin", f"HEAD:refs/heads/{self.branch}")
        return sha, pushed.stderr


def wait_run(api: Api, run_id: str, statuses: tuple[str, ...] = SETTLED, timeout: float = 60) -> dict[str, Any]:
    """Poll a workspace run until its status is one of `statuses`; returns its `data`."""
    deadline = time.monotonic() + timeout
    while True:
        data = api.get(f"/api/v2/runs/{run_id}").json()["data"]
        if data["attributes"]["status"] in statuses:
            return data
        assert time.monotonic() < deadline, f"run {run_id} still {data['attributes']['status']} after {timeout}s"
        time.sleep(0.1)


def legacy_runs(sandbox: Sandbox, env: str, org: str = "acme-legacy") -> list[dict[str, Any]]:
    """A legacy environment's runs, newest first (the store's rows: no documented endpoint lists them)."""
    row = sandbox.store.find_environment(org, env)
    assert row is not None, f"no legacy environment {org}/{env}"
    return sandbox.store.list_legacy_runs(row["id"])


def wait_legacy_run(sandbox: Sandbox, env: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll a legacy run until it settled; returns its record."""
    deadline = time.monotonic() + timeout
    while True:
        run = next(r for r in legacy_runs(sandbox, env) if r["id"] == run_id)
        if run["status"] in SETTLED:
            return run
        assert time.monotonic() < deadline, f"legacy run {run_id} still {run['status']} after {timeout}s"
        time.sleep(0.1)


def workspace_runs(api: Api, ws_id: str) -> list[dict[str, Any]]:
    """A workspace's runs, newest first."""
    return api.get(f"/api/v2/workspaces/{ws_id}/runs").json()["data"]


def new_org_with_vcs(api: Api) -> tuple[str, str]:
    """A new organization with an OAuth client for the sandbox's repositories; returns (org, oauth token id)."""
    org = f"acme-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v2/organizations", json=doc("organizations", name=org, email="a@acme.example")).status_code == 201
    root = "file://" + api.sandbox.env["SANDBOX_GIT_ROOT"]
    client = api.post(f"/api/v2/organizations/{org}/oauth-clients", json=doc(
        "oauth-clients", **{"service-provider": "gitlab_community_edition", "http-url": root, "api-url": root,
                            "oauth-token-string": "sandbox-vcs-token", "name": "sandbox git"}))
    assert client.status_code == 201, client.text
    return org, client.json()["data"]["relationships"]["oauth-tokens"]["data"][0]["id"]


def vcs_workspace(api: Api, org: str, token_id: str, name: str, identifier: str, *, terraform_version: str,
                  working_directory: str = "", branch: str = "", variables: dict[str, str] | None = None,
                  env_variables: dict[str, str] | None = None, **attributes: Any) -> dict[str, Any]:
    """Create a VCS-linked workspace with variables; returns its `data`.

    `queue-all-runs` is true unless given: with TFE's default (false) a push queues no run until one was
    queued through the API (workspaces.mdx), and these tests are about what a push starts.
    """
    queue_all = attributes.pop("queue-all-runs", True)
    ws = create_workspace(api, org, name, **{"terraform-version": terraform_version,
                                             "working-directory": working_directory, "auto-apply": False,
                                             "queue-all-runs": False,
                                             "vcs-repo": {"identifier": identifier, "oauth-token-id": token_id,
                                                          "branch": branch}}, **attributes)
    if queue_all:
        # set after the link: linked with it on, the workspace would queue a run of the branch head at once
        # (workspaces.mdx `queue-all-runs`), and these tests are about what a push starts
        turned = api.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", **{"queue-all-runs": True}))
        assert turned.status_code == 200, turned.text
        ws = turned.json()["data"]
    for category, values in (("terraform", variables or {}), ("env", env_variables or {})):
        for key, value in values.items():
            created = api.post(f"/api/v2/workspaces/{ws['id']}/vars",
                               json=doc("vars", key=key, value=value, category=category))
            assert created.status_code == 201, created.text
    return ws


def upload_state(api: Api, ws_id: str, body: bytes, *, keep_locked: bool = False) -> dict[str, Any]:
    """Upload a state as a new state version (lock, POST inline, unlock unless `keep_locked`)."""
    import base64
    import hashlib
    import json

    state = json.loads(body)
    api.post(f"/api/v2/workspaces/{ws_id}/actions/lock", json={"reason": "state migration"})
    created = api.post(f"/api/v2/workspaces/{ws_id}/state-versions", json=doc(
        "state-versions", serial=state["serial"], md5=hashlib.md5(body).hexdigest(), lineage=state["lineage"],
        state=base64.b64encode(body).decode()))
    assert created.status_code == 201, created.text
    if not keep_locked:
        assert api.post(f"/api/v2/workspaces/{ws_id}/actions/unlock").status_code == 200
    return created.json()["data"]


def legacy_state(legacy: Api, env: str, org: str = "acme-legacy") -> bytes:
    """The raw state bytes of a legacy environment."""
    response = legacy.get(f"/api/v1/terraform/state/{org}/{env}")
    assert response.status_code == 200, response.text
    return response.content
