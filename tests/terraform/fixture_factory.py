"""Build the state and plan fixtures in tests/fixtures with the real terraform binaries.

Every fixture file is what Terraform itself wrote, byte for byte: states are the `terraform.tfstate`
files, plans are `terraform show -json` (1.x) or the plan text printed by 0.11 (with and without
`-no-color`). Offline: 0.11.11 gets the bundled null provider through `-plugin-dir`, 1.x through a
filesystem mirror named in a CLI config file.

The scenarios (one small configuration per generation, changed only through variables):

states/
  v3.tfstate                    0.11.11 apply: root resources, `count = 2`, `count = 1` (stored without
                                index), two data sources, a child module with a grandchild, outputs
                                (one sensitive)
  v4.tfstate                    1.x apply of the same configuration, plus a `terraform_data`
  v4_upgraded_from_v3.tfstate   v3.tfstate after 1.x `state replace-provider -/null hashicorp/null` (the
                                0.13 upgrade step 1.x demands): same lineage, v4 with flatmap attributes
  v4_refreshed_from_v3.tfstate  that state after 1.x `apply -refresh-only`: JSON attributes, data re-read
plans/
  v011_<scenario>.txt           0.11 `plan -no-color`; `.ansi.txt` the same plan with colors
      create                    empty state: everything to add
      noop                      after apply: "No changes."
      replace                   `-var v=two`: null_resource.a replaced (-/+), data source y read (<=)
      delete                    `-var n=1`: null_resource.counted[1] destroyed
      tainted                   after `taint null_resource.counted.1`: -/+ with (tainted)
  v1_<scenario>.json            1.x `plan -out` + `show -json`
      create, noop, replace     as above
      update                    `-var d=two`: terraform_data.d input updated in place
      delete                    `-var n=1`
      replace_requested         `-replace=null_resource.counted[0]` (action_reason replace_by_request)

Terraform 0.11 cannot produce an in-place update ("~") with the null provider: null_resource's only
argument, `triggers`, forces a new resource. The unit tests cover "~" with a hand-written plan text.

Run `pytest tests/terraform/test_fixtures_genuine.py --regenerate-fixtures` to rewrite the committed files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib import terraform as tf

V011_PLAN_SCENARIOS = ("create", "noop", "replace", "delete", "tainted")
V1_PLAN_SCENARIOS = ("create", "noop", "update", "delete", "replace", "replace_requested")
STATE_FILES = ("v3.tfstate", "v4.tfstate", "v4_upgraded_from_v3.tfstate", "v4_refreshed_from_v3.tfstate")

_CONFIG_011 = {
    "main.tf": '''\
variable "v" { default = "one" }
variable "n" { default = 2 }

resource "null_resource" "a" {
  triggers { v = "${var.v}" }
}

resource "null_resource" "counted" {
  count = "${var.n}"
  triggers { i = "${count.index}" }
}

# count = 1: Terraform 0.11 stores this instance without an index ("null_resource.single").
resource "null_resource" "single" {
  count = 1
}

data "null_data_source" "x" {
  inputs { k = "val" }
}

# Depends on a resource: read again (<=) whenever null_resource.a is replaced.
data "null_data_source" "y" {
  inputs { id = "${null_resource.a.id}" }
}

module "child" {
  source = "./child"
}

output "o" { value = "${data.null_data_source.x.outputs["k"]}" }
output "l" { value = ["a", "b"] }
output "child_id" { value = "${module.child.id}" }
output "secret" {
  value     = "fixture-not-a-secret"
  sensitive = true
}
''',
    "child/main.tf": '''\
resource "null_resource" "b" {}

module "grand" {
  source = "./grand"
}

output "id" { value = "${null_resource.b.id}" }
''',
    "child/grand/main.tf": '''\
resource "null_resource" "c" {}
''',
}

_REQUIRED_NULL = '''\
terraform {
  required_providers {
    null = { source = "hashicorp/null"%s }
  }
}
'''

_CONFIG_1X = {
    "main.tf": _REQUIRED_NULL % ', version = "2.1.2"' + '''
variable "v" { default = "one" }
variable "n" { default = 2 }
variable "d" { default = "one" }

resource "null_resource" "a" {
  triggers = { v = var.v }
}

resource "null_resource" "counted" {
  count    = var.n
  triggers = { i = count.index }
}

resource "null_resource" "single" {
  count = 1
}

# terraform_data.input updates in place (null_resource cannot: its triggers force replacement).
resource "terraform_data" "d" {
  input = var.d
}

data "null_data_source" "x" {
  inputs = { k = "val" }
}

data "null_data_source" "y" {
  inputs = { id = null_resource.a.id }
}

module "child" {
  source = "./child"
}

output "o" { value = data.null_data_source.x.outputs["k"] }
output "l" { value = ["a", "b"] }
output "child_id" { value = module.child.id }
output "secret" {
  value     = "fixture-not-a-secret"
  sensitive = true
}
''',
    "child/main.tf": _REQUIRED_NULL % "" + '''
resource "null_resource" "b" {}

module "grand" {
  source = "./grand"
}

output "id" { value = null_resource.b.id }
''',
    "child/grand/main.tf": _REQUIRED_NULL % "" + '''
resource "null_resource" "c" {}
''',
}


@dataclass
class _Workdir:
    """A root module in a temporary directory and the terraform that runs it."""

    path: Path
    binary: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str) -> str:
        return tf.run(self.binary, list(args), cwd=self.path, env=self.env, timeout=120).stdout


def _write_config(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _workdir_011(root: Path) -> _Workdir:
    directory = root / "v011"
    _write_config(directory, _CONFIG_011)
    work = _Workdir(directory, tf.terraform_011())
    work.run("init", "-input=false", "-no-color", "-plugin-dir", tf.plugin_dir_011(root / "plugins011"))
    return work


def _workdir_1x(root: Path, name: str = "v1") -> _Workdir:
    directory = root / name
    _write_config(directory, _CONFIG_1X)
    config = tf.write_cli_config(root / "cli.tfrc", mirror_dir=tf.provider_mirror_1x(root / "mirror1x"))
    # TF_DATA_DIR is left alone: .terraform stays inside the temporary root module.
    return _Workdir(directory, tf.terraform_1x(), {"TF_CLI_CONFIG_FILE": config})


def _plan_011(work: _Workdir, *variables: str) -> tuple[str, str]:
    args = ["plan", "-input=false", *variables]
    return work.run(*args, "-no-color"), work.run(*args)


def _plan_1x(work: _Workdir, name: str, *args: str) -> str:
    work.run("plan", "-input=false", "-no-color", f"-out={name}.tfplan", *args)
    return work.run("show", "-json", f"{name}.tfplan")


def generate(out_dir: str | os.PathLike, work_root: str | os.PathLike) -> list[Path]:
    """Run the scenarios with the real binaries and write every fixture file under `out_dir`.

    Args:
        out_dir: where `states/` and `plans/` are written (tests/fixtures to regenerate the committed set).
        work_root: an empty scratch directory for the root modules, plugin dir and mirror.

    Returns:
        The files written.

    Raises:
        runbook_lib.errors.TerraformError: a terraform command failed.
    """
    out, root = Path(out_dir), Path(work_root)
    (out / "states").mkdir(parents=True, exist_ok=True)
    (out / "plans").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(relative: str, text: str | bytes) -> None:
        target = out / relative
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        written.append(target)

    def save_011(scenario: str, plans: tuple[str, str]) -> None:
        save(f"plans/v011_{scenario}.txt", plans[0])
        save(f"plans/v011_{scenario}.ansi.txt", plans[1])

    # Terraform 0.11.11
    w011 = _workdir_011(root)
    save_011("create", _plan_011(w011))
    w011.run("apply", "-input=false", "-auto-approve", "-no-color")
    v3_state = (w011.path / "terraform.tfstate").read_bytes()
    save("states/v3.tfstate", v3_state)
    save_011("noop", _plan_011(w011))
    save_011("replace", _plan_011(w011, "-var", "v=two"))
    save_011("delete", _plan_011(w011, "-var", "n=1"))
    w011.run("taint", "-no-color", "null_resource.counted.1")
    save_011("tainted", _plan_011(w011))

    # Terraform 1.x
    w1 = _workdir_1x(root)
    w1.run("init", "-input=false", "-no-color")
    save("plans/v1_create.json", _plan_1x(w1, "create"))
    w1.run("apply", "-input=false", "-auto-approve", "-no-color")
    save("states/v4.tfstate", (w1.path / "terraform.tfstate").read_bytes())
    save("plans/v1_noop.json", _plan_1x(w1, "noop"))
    save("plans/v1_update.json", _plan_1x(w1, "update", "-var", "d=two"))
    save("plans/v1_delete.json", _plan_1x(w1, "delete", "-var", "n=1"))
    save("plans/v1_replace.json", _plan_1x(w1, "replace", "-var", "v=two"))
    save("plans/v1_replace_requested.json", _plan_1x(w1, "replace_requested", "-replace=null_resource.counted[0]"))

    # The 0.11 state taken over by 1.x, as an operator must: first the provider address (the 0.13
    # upgrade step; it needs no configuration), then a refresh that rewrites attributes as JSON.
    up = root / "upgrade"
    up.mkdir()
    (up / "terraform.tfstate").write_bytes(v3_state)
    _Workdir(up, w1.binary, w1.env).run("state", "replace-provider", "-auto-approve", "-no-color",
                                        "registry.terraform.io/-/null", "registry.terraform.io/hashicorp/null")
    upgraded = (up / "terraform.tfstate").read_bytes()
    save("states/v4_upgraded_from_v3.tfstate", upgraded)
    refresh = _workdir_1x(root, "refresh")
    (refresh.path / "terraform.tfstate").write_bytes(upgraded)
    refresh.run("init", "-input=false", "-no-color")
    refresh.run("apply", "-refresh-only", "-input=false", "-auto-approve", "-no-color")
    save("states/v4_refreshed_from_v3.tfstate", (refresh.path / "terraform.tfstate").read_bytes())
    return written


def regenerate_committed(fixtures_dir: str | os.PathLike, work_root: str | os.PathLike) -> list[Path]:
    """Replace the committed fixture files (states/, plans/) with freshly generated ones.

    Args:
        fixtures_dir: tests/fixtures.
        work_root: an empty scratch directory.

    Returns:
        The files written.
    """
    fixtures_dir = Path(fixtures_dir)
    for sub in ("states", "plans"):
        if (fixtures_dir / sub).is_dir():
            shutil.rmtree(fixtures_dir / sub)
    return generate(fixtures_dir, work_root)
