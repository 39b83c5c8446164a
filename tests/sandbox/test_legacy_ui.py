"""The sandbox's legacy web UI: where an operator unlinks and deletes, since the legacy API could not.

Driven by the same form posts a browser sends (`rehearsal.LegacyUi`); the browser tier clicks it in Chromium.
"""

from __future__ import annotations

import json

import pytest
import requests
from sandbox_helpers import Api

from runbook_lib.rehearsal import LegacyUi
from runbook_lib.sandbox import Sandbox

PAYLOAD = '<img src=x onerror="alert(1)">'


def _state(serial: int) -> bytes:
    return json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": serial, "lineage": "lin-ui",
                       "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]}).encode()


@pytest.fixture
def env(fresh_sandbox: Sandbox) -> dict:
    """`acme-legacy/web.prod` in a fresh sandbox: a state, a VCS link, a sensitive and a hostile variable."""
    Api(fresh_sandbox, legacy=True).put("/api/v1/terraform/state/acme-legacy/web.prod", data=_state(1))
    store = fresh_sandbox.store
    row = store.find_environment("acme-legacy", "web.prod")
    store.set_environment_vcs(row["id"], {"repo": "acme-legacy/web", "branch": PAYLOAD, "working_directory": ""})
    store.set_legacy_var(row["id"], "db_password", "hunter2", sensitive=True)
    store.set_legacy_var(row["id"], PAYLOAD, "v", category="env")
    return row


def test_pages_need_a_session_and_a_wrong_password_is_refused(fresh_sandbox: Sandbox, env):
    base = fresh_sandbox.address
    answer = requests.get(f"{base}/terraform/acme-legacy/environments/web.prod/settings", allow_redirects=False,
                          timeout=30)
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/login?next=")
    with pytest.raises(RuntimeError, match="signing in .* failed"):
        LegacyUi(base, "operator", "not-the-token")


def test_pages_show_what_the_operator_needs_and_escape_host_text(fresh_sandbox: Sandbox, env):
    ui = LegacyUi.for_sandbox(fresh_sandbox)
    variables = ui.page("acme-legacy", "web.prod", "variables")
    assert "db_password" in variables and "hunter2" not in variables  # sensitive values are never shown
    integrations = ui.page("acme-legacy", "web.prod", "integrations")
    assert "acme-legacy/web" in integrations and ">Unlink<" in integrations
    for page in (variables, integrations):
        assert PAYLOAD not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_unlink_by_form_post_and_nothing_without_the_authenticity_token(fresh_sandbox: Sandbox, env):
    ui = LegacyUi.for_sandbox(fresh_sandbox)
    forged = ui.http.post(f"{fresh_sandbox.address}/terraform/acme-legacy/environments/web.prod/integrations/unlink",
                          data={}, allow_redirects=False, timeout=30)
    assert forged.status_code == 403
    assert fresh_sandbox.store.find_environment("acme-legacy", "web.prod")["vcs_repo"] == "acme-legacy/web"
    assert ui.unlink("acme-legacy", "web.prod") == "Unlinked from version control."
    assert fresh_sandbox.store.find_environment("acme-legacy", "web.prod")["vcs_repo"] is None
    assert "Not linked to a repository" in ui.page("acme-legacy", "web.prod", "integrations")
    assert ui.link("acme-legacy", "web.prod", "acme-legacy/web", "master", "envs/prod") == "Linked to acme-legacy/web."
    row = fresh_sandbox.store.find_environment("acme-legacy", "web.prod")
    assert (row["vcs_repo"], row["vcs_branch"], row["vcs_working_directory"]) == ("acme-legacy/web", "master",
                                                                                  "envs/prod")


def test_delete_needs_the_typed_name_and_a_read_only_member_may_not(fresh_sandbox: Sandbox, env):
    sandbox = fresh_sandbox
    auditor = sandbox.store.create_user("auditor", "auditor@acme.example")
    sandbox.store.add_legacy_member("acme-legacy", auditor["id"], "read")
    reader = LegacyUi(sandbox.address, "auditor", sandbox.store.create_token(auditor["id"], "auditor-ui"))
    assert "web.prod" in reader.page("acme-legacy", "web.prod", "settings")  # a reader sees the page
    with pytest.raises(RuntimeError, match="answered 403"):
        reader.delete("acme-legacy", "web.prod")
    ui = LegacyUi.for_sandbox(sandbox)
    assert ui._submit("acme-legacy", "web.prod", "settings", "settings/delete", confirm="web") \
        == "Type web.prod to confirm the deletion."
    assert sandbox.store.find_environment("acme-legacy", "web.prod") is not None
    ui.delete("acme-legacy", "web.prod")
    legacy = Api(sandbox, legacy=True)
    assert legacy.get("/api/v1/terraform/state/acme-legacy/web.prod").status_code == 404
    assert legacy.get("/api/v1/terraform/state?username=acme-legacy").json() == {"states": []}


def test_lock_and_unlock_on_the_settings_page(fresh_sandbox: Sandbox, env):
    ui = LegacyUi.for_sandbox(fresh_sandbox)
    ui._submit("acme-legacy", "web.prod", "settings", "settings/lock", reason="change freeze")
    row = fresh_sandbox.store.find_environment("acme-legacy", "web.prod")
    assert row["locked"] and row["locked_by"] == "operator" and "change freeze" in ui.page("acme-legacy", "web.prod",
                                                                                          "settings")
    assert ui.unlock("acme-legacy", "web.prod") == "Unlocked."
    assert not fresh_sandbox.store.find_environment("acme-legacy", "web.prod")["locked"]
