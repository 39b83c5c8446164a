"""Proof 1: Terraform 0.11.11's `atlas` backend against the sandbox, then the upgrade guide's steps 3.b-3.e."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from sandbox_helpers import Api, create_workspace, doc
from sandbox_fixtures import create_organization

from runbook_lib import terraform
from runbook_lib.sandbox import Sandbox

CONFIG = '''variable "size" {
  default = 2
}

resource "null_resource" "web" {
  count = "${var.size}"

  triggers {
    index = "${count.index}"
  }
}
'''


def _backend(name: str) -> str:
    return f'terraform {{\n  backend "atlas" {{\n    name = "{name}"\n  }}\n}}\n'


def _tf(cwd: Path, sandbox: Sandbox, *args: str, check: bool = True) -> terraform.TerraformResult:
    env = {"ATLAS_ADDRESS": sandbox.legacy_address, "ATLAS_TOKEN": sandbox.operator_token}
    if sandbox.ca_file:
        env["SSL_CERT_FILE"] = sandbox.ca_file
    return terraform.run(terraform.terraform_011(), list(args), cwd=cwd, env=env, check=check, timeout=180)


def _migrate(cwd: Path, sandbox: Sandbox, plugins: str, legacy_name: str, new_name: str) -> terraform.TerraformResult:
    """Steps 3.b-3.e exactly: backend block with the legacy name, init, rename, init -force-copy."""
    (cwd / "backend.tf").write_text(_backend(legacy_name))                       # 3.b
    _tf(cwd, sandbox, "init", "-input=false", f"-plugin-dir={plugins}")           # 3.c
    (cwd / "backend.tf").write_text(_backend(new_name))                          # 3.d
    return _tf(cwd, sandbox, "init", "-force-copy", "-input=false", f"-plugin-dir={plugins}", check=False)  # 3.e


def _current_state_bytes(api: Api, ws_id: str) -> tuple[dict, bytes]:
    current = api.get(f"/api/v2/workspaces/{ws_id}/current-state-version")
    assert current.status_code == 200, current.text
    attrs = current.json()["data"]["attributes"]
    download = api.get(attrs["hosted-state-download-url"])
    assert download.status_code == 200
    return attrs, download.content


def _applied_on_legacy(sandbox: Sandbox, tmp_path: Path, slug: str) -> tuple[Path, Path]:
    """A working directory of CONFIG on the atlas backend `slug`, applied by Terraform 0.11 (two resources added).

    Returns:
        (working directory, plugin directory).
    """
    plugins = terraform.plugin_dir_011(tmp_path / "plugins")
    cwd = tmp_path / "env"
    cwd.mkdir()
    (cwd / "main.tf").write_text(CONFIG)
    (cwd / "backend.tf").write_text(_backend(slug))
    _tf(cwd, sandbox, "init", "-input=false", f"-plugin-dir={plugins}")
    applied = _tf(cwd, sandbox, "apply", "-auto-approve", "-input=false")
    assert "2 added" in applied.stdout
    return cwd, plugins


def test_apply_then_migrate_into_a_locked_workspace(fresh_sandbox: Sandbox, tmp_path: Path):
    sandbox = fresh_sandbox
    cwd, plugins = _applied_on_legacy(sandbox, tmp_path, "acme-legacy/web.prod")

    legacy = Api(sandbox, legacy=True)
    legacy_state = legacy.get("/api/v1/terraform/state/acme-legacy/web.prod")
    assert legacy_state.status_code == 200
    legacy_doc = json.loads(legacy_state.content)
    assert legacy_doc["terraform_version"] == "0.11.11" and len(legacy_doc["modules"][0]["resources"]) == 2

    # step 1 and 2: new organization, workspace created and locked by the operator
    api = Api(sandbox)
    org = create_organization(sandbox, "acme-new")
    ws = create_workspace(api, org, "web-prod", **{"terraform-version": "0.11.11", "auto-apply": False})
    assert api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={"reason": "migration"}).status_code == 200

    mark = sandbox.log_mark()
    result = _migrate(cwd, sandbox, plugins, "acme-legacy/web.prod", f"{org}/web-prod")
    assert result.returncode == 0, result.output
    puts = [r for r in sandbox.request_log(since=mark, method="PUT")]
    assert [(r["path"], r["status"]) for r in puts] == [(f"/api/v1/terraform/state/{org}/web-prod", 200)]

    attrs, migrated = _current_state_bytes(api, ws["id"])
    via_v1 = legacy.get(f"/api/v1/terraform/state/{org}/web-prod")
    assert via_v1.content == migrated                                 # both APIs serve the same bytes
    # byte for byte what terraform holds (`state pull` prints it with one extra newline); the PUT itself
    # carried a Content-MD5 the sandbox verified, so the stored bytes are exactly terraform's
    pulled = _tf(cwd, sandbox, "state", "pull").stdout
    assert pulled.encode() == migrated + b"\n"
    assert "md5" not in attrs and "lineage" not in attrs  # as on the real API: identity is in the bytes
    migrated_doc = json.loads(migrated)
    assert migrated_doc["lineage"] == legacy_doc["lineage"]
    assert migrated_doc["modules"] == legacy_doc["modules"]
    assert attrs["serial"] == migrated_doc["serial"] >= legacy_doc["serial"]
    # the legacy state is untouched by the migration
    assert legacy.get("/api/v1/terraform/state/acme-legacy/web.prod").content == legacy_state.content
    # the workspace is still locked: nothing runs until step 5
    assert api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["locked"] is True


def test_migration_refused_when_another_user_holds_the_lock(fresh_sandbox: Sandbox, tmp_path: Path):
    sandbox = fresh_sandbox
    cwd, plugins = _applied_on_legacy(sandbox, tmp_path, "acme-legacy/app")

    org = create_organization(sandbox, "acme-locked")
    colleague = sandbox.store.create_user("colleague", "colleague@acme.example")
    colleague_token = sandbox.store.create_token(colleague["id"], "colleague-api-token")
    sandbox.store.add_org_member(org, colleague["id"])
    ws = create_workspace(Api(sandbox), org, "app")
    assert Api(sandbox, colleague_token).post(f"/api/v2/workspaces/{ws['id']}/actions/lock").status_code == 200

    mark = sandbox.log_mark()
    result = _migrate(cwd, sandbox, plugins, "acme-legacy/app", f"{org}/app")
    assert result.returncode != 0
    rows = sandbox.request_log(since=mark, method="PUT")
    assert [(r["status"], r["changes"]) for r in rows] == [(409, 0)]
    assert Api(sandbox).get(f"/api/v2/workspaces/{ws['id']}/current-state-version").status_code == 404


def test_seeded_environment_from_git_migrates(seeded_sandbox: Sandbox, tmp_path: Path):
    """A seeded environment without a backend block in git, through the guide's steps, into a new workspace."""
    sandbox = seeded_sandbox
    git_root = Path(sandbox.env["SANDBOX_GIT_ROOT"])
    cwd = tmp_path / "web"
    subprocess.run(["git", "clone", "-q", str(git_root / "acme-legacy" / "web.git"), str(cwd)], check=True)
    assert not (cwd / "backend.tf").exists()      # 3.b is needed for this one
    plugins = terraform.plugin_dir_011(tmp_path / "plugins")
    legacy_bytes = Api(sandbox, legacy=True).get("/api/v1/terraform/state/acme-legacy/web.prod").content

    org = create_organization(sandbox)
    api = Api(sandbox)
    ws = create_workspace(api, org, "web-prod")
    api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json=doc("", reason="migration"))
    result = _migrate(cwd, sandbox, plugins, "acme-legacy/web.prod", f"{org}/web-prod")
    assert result.returncode == 0, result.output
    _, migrated = _current_state_bytes(api, ws["id"])
    assert json.loads(migrated)["lineage"] == json.loads(legacy_bytes)["lineage"]
    assert json.loads(migrated)["modules"] == json.loads(legacy_bytes)["modules"]
    assert _tf(cwd, sandbox, "state", "pull").stdout.encode() == migrated + b"\n"
    shutil.rmtree(cwd)


def test_atlas_backend_conflict(fresh_sandbox: Sandbox, tmp_path: Path):
    """The legacy endpoint's 409 (the same serial with other content, a diverged local state), as
    `state_client.go` Put expects it. There is no 412: Terraform 0.11's own test host stores a lower serial
    (test_legacy_api.py's state endpoint test shows the sandbox does too)."""
    sandbox = fresh_sandbox
    legacy = Api(sandbox, legacy=True)
    base = {"version": 3, "terraform_version": "0.11.11", "serial": 5, "lineage": "l-1",
            "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]}
    body = json.dumps(base).encode()
    assert legacy.put("/api/v1/terraform/state/acme-legacy/conflicts", data=body).status_code == 200
    mark = sandbox.log_mark()
    other = dict(base, terraform_version="0.11.10")  # serial 5 again, other bytes
    answer = legacy.put("/api/v1/terraform/state/acme-legacy/conflicts", data=json.dumps(other).encode())
    assert answer.status_code == 409
    assert answer.json() == {"errors": ["Md5 The MD5 hash of the state provided does not match what is "
                                        "currently known for the same serial number"], "success": False}
    assert [r["changes"] for r in sandbox.request_log(since=mark)] == [0]
    assert legacy.get("/api/v1/terraform/state/acme-legacy/conflicts").content == body
