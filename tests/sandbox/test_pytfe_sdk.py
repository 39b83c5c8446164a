"""Proof 3: the official SDK `pytfe` against the seeded sandbox (HTTPS with the sandbox's CA)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from pytfe import TFEClient, TFEConfig
from pytfe.errors import NotFound
from pytfe.models import WorkspaceCreateOptions, WorkspaceLockOptions
from sandbox_helpers import Api

from runbook_lib.sandbox import Sandbox


@pytest.fixture
def client(seeded_sandbox: Sandbox):  # noqa: ANN201
    config = TFEConfig(address=seeded_sandbox.tfe_address, token=seeded_sandbox.operator_token,
                       ca_bundle=seeded_sandbox.ca_file, max_retries=5)
    with TFEClient(config) as tfe:
        yield tfe


def test_pytfe_organizations_workspaces_lock_and_state(client: TFEClient, seeded_sandbox: Sandbox, new_org: str):
    names = [org.name for org in client.organizations.list()]
    assert new_org in names and "outsider-corp" not in names

    created = client.workspaces.create(new_org, WorkspaceCreateOptions(name="sdk-made"))
    assert created.name == "sdk-made" and created.id.startswith("ws-")
    for i in range(3):
        client.workspaces.create(new_org, WorkspaceCreateOptions(name=f"extra-{i}"))
    listed = sorted(ws.name for ws in client.workspaces.list(new_org))
    assert listed == ["extra-0", "extra-1", "extra-2", "sdk-made"]
    assert client.workspaces.read("sdk-made", organization=new_org).id == created.id

    locked = client.workspaces.lock(created.id, WorkspaceLockOptions(reason="migration"))
    assert locked.locked is True
    with pytest.raises(Exception) as conflict:
        client.workspaces.lock(created.id, WorkspaceLockOptions(reason="again"))
    assert "already locked" in str(conflict.value)

    # a state version made while locked (through the API, as the runbook's step 3 can)
    state = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": "sdk-lineage",
                        "outputs": {}, "resources": [], "check_results": None}).encode()
    api = Api(seeded_sandbox)
    made = api.post(f"/api/v2/workspaces/{created.id}/state-versions", json={"data": {
        "type": "state-versions", "attributes": {"serial": 1, "md5": hashlib.md5(state).hexdigest(),
                                                 "lineage": "sdk-lineage"}}})
    assert made.status_code == 201
    assert api.put(made.json()["data"]["attributes"]["hosted-state-upload-url"], data=state).status_code == 200

    unlocked = client.workspaces.unlock(created.id)
    assert unlocked.locked is False
    # the host finalizes an upload asynchronously (state-versions.mdx): current once finalized
    deadline = time.monotonic() + 10
    while True:
        try:
            current = client.state_versions.read_current(created.id)
            break
        except NotFound:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert current.serial == 1 and current.id == made.json()["data"]["id"]
    assert client.state_versions.download(current.id) == state


def test_pytfe_cannot_see_another_organization(seeded_sandbox: Sandbox):
    config = TFEConfig(address=seeded_sandbox.tfe_address, token=seeded_sandbox.operator_token,
                       ca_bundle=seeded_sandbox.ca_file, max_retries=0)
    with TFEClient(config) as tfe:
        with pytest.raises(NotFound):
            tfe.workspaces.read("payments-prod", organization="outsider-corp")
