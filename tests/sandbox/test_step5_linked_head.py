"""Step 5 with the runs TFE queues before the push: linking VCS in step 2 ingests the branch head at once.

With `queue-all-runs` on, linking a repository queues a run of the branch head (workspaces.mdx
`queue-all-runs`); step 2 links a locked workspace, so that run waits behind the lock, and so does a run of any
commit pushed to the branch meanwhile. Here, after step 4, a commit adds a resource (its plan would have
changes and wait for confirmation) and a later commit takes it away again. Left queued, all of them would plan
before the push's run, each holding a run slot of the host (and one holding the queue until someone discards
it). Step 5 discards them while they are still queued, before it unlocks ("pending" runs can be discarded:
run.mdx "Discard a Run"), so none of them plans or applies, and proves the cut-over only with the run of its
own push. (A run that already started when step 5 unlocks is handled by the wait: `current_run_or_clear`.)

Uses steps 1-5 in apply mode as `test_steps_4_6.py` does (step 4 included: the operator unlinks the legacy
environment in the sandbox's legacy UI, then the step records the baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sandbox_helpers import Api
from test_steps_4_6 import LEGACY_ORG, NEW_ORG, _ctx, _migrate, _step4
from vcs_helpers import Checkout

from runbook_lib.rehearsal import LegacyUi
from runbook_lib.sandbox import Sandbox
from runbook_lib.steps import commit_verify
from sandbox_fixtures import sandbox_in_environ, write_operator_mapping

ENV = "web.prod"
WORKSPACE = "web-prod"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with sandbox_in_environ(tmp_path_factory.mktemp("sandbox-linked-head"), seed=2) as sb:
        yield sb


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_operator_mapping(sandbox, root, [ENV])  # the facts the operator read off the legacy UI
    return root


def _runs(api: Api, ws_id: str) -> list[dict]:
    listed = api.get(f"/api/v2/workspaces/{ws_id}/runs?include=configuration_version.ingress_attributes")
    assert listed.status_code == 200, listed.text
    commits = {i["id"]: i["attributes"]["commit-sha"] for i in listed.json().get("included", [])
               if i["type"] == "ingress-attributes"}
    out = []
    for run in listed.json()["data"]:
        cv = run["relationships"]["configuration-version"]["data"]
        ingress = api.get(f"/api/v2/configuration-versions/{cv['id']}").json()["data"]["relationships"][
            "ingress-attributes"]["data"] if cv else None
        out.append({"id": run["id"], "status": run["attributes"]["status"],
                    "commit": commits.get(ingress["id"]) if ingress else None})
    return out


def test_step_5_discards_the_linked_heads_waiting_run_and_proves_with_its_own(sandbox, audit, tmp_path):
    api = Api(sandbox)
    _migrate(sandbox, audit, ENV)  # steps 1-3: step 2 links the locked workspace: a run of the head waits
    ws = api.get(f"/api/v2/organizations/{NEW_ORG}/workspaces/{WORKSPACE}").json()["data"]
    assert ws["attributes"]["locked"] is True
    [linked] = _runs(api, ws["id"])
    assert linked["status"] == "pending" and linked["commit"]
    _step4(sandbox, audit, ENV, LegacyUi.for_sandbox(sandbox))  # unlinked in the UI: no more runs on pushes

    repo = Checkout(sandbox, f"{LEGACY_ORG}/web", tmp_path / "web")
    repo.write("extra.tf", 'resource "null_resource" "extra" {}\n')
    head, _ = repo.push("Add a server nobody applied")  # its plan has changes: it will wait for confirmation
    (repo.path / "extra.tf").unlink()
    reverted, _ = repo.push("Take the server away again")
    assert [(r["commit"], r["status"]) for r in _runs(api, ws["id"])] == [
        (reverted, "pending"), (head, "pending"), (linked["commit"], "pending")]

    ctx = _ctx(sandbox, audit, "05_commit_and_verify", ENV, wait_timeout=180, backend_target="atlas")
    commit_verify.apply(ctx)
    five = commit_verify.verify(ctx)
    assert five.passed, five.summary
    pushed = five.evidence["commit"]
    assert five.evidence["run_commit"] == pushed and pushed not in (head, reverted)

    by_commit = {r["commit"]: r for r in _runs(api, ws["id"])}
    # the runs queued before the push were discarded while queued: none of them planned, none can apply
    for commit in (linked["commit"], head, reverted):
        run = by_commit[commit]
        assert run["status"] == "discarded", (commit, run)
        plan = api.get(f"/api/v2/runs/{run['id']}/plan").json()["data"]["attributes"]
        assert plan["status"] in ("pending", "unreachable"), plan  # never ran
    assert by_commit[pushed]["id"] == five.evidence["run_id"]
    assert by_commit[pushed]["status"] == "planned_and_finished"
