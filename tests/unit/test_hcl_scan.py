"""The scan that lets large files skip the full parse: it must find what a full parse finds, and refuse
what a full parse refuses, wherever the block or the mistake sits in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_lib import hcl
from runbook_lib.errors import HclError
from runbook_lib.hcl import _syntax
from runbook_lib.hcl._scan import ScanError, Unsupported, scan_top_level

ATLAS = 'terraform {\n  backend "atlas" {\n    name = "legacy/app"\n  }\n}\n'

# Everything that hides braces or the words `terraform {` from a naive reader.
DISTRACTIONS = r'''# terraform { backend "atlas" { name = "x/y" } }
// terraform {
/* terraform {
   backend "atlas" { name = "x/y" } */
variable "ami" {}

locals {
  text     = "terraform { backend \"atlas\" {} } ${upper("}")} %{ if true }{%{ endif }"
  escaped  = "$${not_a_template} %%{not_a_directive} {"
  multi    = "a string
spanning two lines {"
  nested   = "${jsonencode({ a = "}", b = ["{"] })}"
  division = 4 / 2
}

resource "null_resource" "a" {
  triggers = {
    script = <<EOT
terraform {
  backend "atlas" { name = "x/y" }
EOT
    trimmed = <<-EOT
      }}}
      EOT
  }
}

data "aws_ami" "x" {
  filter { name = "terraform {" }
}
'''

REMOTE_STATE = 'data "terraform_remote_state" "net" {\n  backend = "atlas"\n\n  config {\n    name = "legacy/net"\n  }\n}\n'


def _resources(count: int) -> str:
    return "".join(f'resource "null_resource" "r{i}" {{\n  triggers = {{\n    i = "{i}-${{var.x}}"\n  }}\n}}\n\n'
                   for i in range(count))


@pytest.fixture
def scan_everything(monkeypatch):
    """Every file, however small, goes through the scan."""
    monkeypatch.setattr(_syntax, "FULL_PARSE_BYTES", 0)


def _both(text: str, monkeypatch) -> tuple[list, list]:
    monkeypatch.setattr(_syntax, "FULL_PARSE_BYTES", 10**9)
    full = _syntax.parse_hcl(text, "main.tf")
    monkeypatch.setattr(_syntax, "FULL_PARSE_BYTES", 0)
    return full, _syntax.parse_hcl(text, "main.tf")


def test_scan_finds_only_real_top_level_blocks():
    text = DISTRACTIONS + ATLAS + REMOTE_STATE
    blocks = scan_top_level(text)
    assert [(b.type, b.labels) for b in blocks] == [
        ("variable", ["ami"]), ("locals", []), ("resource", ["null_resource", "a"]), ("data", ["aws_ami", "x"]),
        ("terraform", []), ("data", ["terraform_remote_state", "net"])]
    terraform = blocks[4]
    assert text[terraform.start:terraform.end] == ATLAS.rstrip("\n")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_scanned_blocks_equal_the_full_parse_with_the_same_spans(newline, monkeypatch):
    text = (DISTRACTIONS + _resources(5) + ATLAS + _resources(5) + REMOTE_STATE).replace("\n", newline)
    full, scanned = _both(text, monkeypatch)
    assert scanned == full
    assert [(b.type, b.labels) for b in scanned] == [("terraform", []), ("data", ["terraform_remote_state", "net"])]
    name = scanned[0].blocks[0].attrs["name"]
    assert text[name.start:name.end] == '"legacy/app"'
    source = scanned[1].blocks[0].attrs["name"]
    assert text[source.start:source.end] == '"legacy/net"'


def test_a_data_block_with_an_escaped_label_is_parsed_to_find_out(monkeypatch):
    # `\u005f` is `_`: the scan does not decode escapes, so the block goes to the parser, which does.
    odd = REMOTE_STATE.replace('"terraform_remote_state"', '"terraform\\u005fremote_state"')
    full, scanned = _both(_resources(3) + odd, monkeypatch)
    assert scanned == full
    assert [b.labels[0] for b in scanned] == ["terraform_remote_state"]


def test_top_level_attribute_falls_back_to_the_full_parse(monkeypatch):
    text = 'x = { a = 1 }\n' + ATLAS
    with pytest.raises(Unsupported):
        scan_top_level(text)
    full, scanned = _both(text, monkeypatch)
    assert scanned == full and scanned[0].type == "terraform"


@pytest.mark.parametrize("broken, reason, line", [
    ('resource "a" "b" {\n  x = {\n}\n', "'{' is never closed", 1),
    ('resource "a" "b" {\n  x = [1, 2)\n}\n', "')' does not close the '['", 2),
    ('resource "a" "b" {\n  x = "open\n}\n', "quoted string is never closed", 2),
    ('resource "a" "b" {\n  x = <<EOF\nno end\n}\n', "heredoc <<EOF is never closed", 2),
    ('resource "a" "b" {\n  /* no end\n}\n', "comment is never closed", 2),
    ('}\n', "'}' closes nothing", 1),
    ('resource "a" "b"\n', "not followed by a block", 1),
])
def test_unbalanced_code_anywhere_is_refused_with_its_line(broken, reason, line, scan_everything):
    before = ATLAS + _resources(20)
    text = before + broken
    with pytest.raises(HclError) as refused:
        _syntax.parse_hcl(text, "main.tf")
    message = str(refused.value)
    assert reason in message
    assert f"at line {before.count(chr(10)) + line}," in message
    assert message.startswith("main.tf cannot be parsed as HCL") and message.endswith("before rewriting it.")


def test_an_error_inside_a_selected_block_names_its_line_in_the_file(monkeypatch):
    text = _resources(10) + 'terraform {\n  backend "atlas" {\n    name = = "legacy/app"\n  }\n}\n'
    messages = []
    for limit in (10**9, 0):
        monkeypatch.setattr(_syntax, "FULL_PARSE_BYTES", limit)
        with pytest.raises(HclError) as refused:
            _syntax.parse_hcl(text, "main.tf")
        messages.append(str(refused.value))
    assert messages[0] == messages[1]
    assert f"at line {_resources(10).count(chr(10)) + 3}," in messages[1]


def test_scan_error_reports_where_the_bracket_was_opened():
    with pytest.raises(ScanError) as raised:
        scan_top_level('a "b" {\n  x = (1\n}\n')
    assert raised.value.opened == 14


# Refusals of the README's "Backend rewriting" section, on files large enough to be scanned, with the block
# or the mistake far from the start.

def _big_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _refused(root: Path, match: str, **kwargs) -> None:
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    with pytest.raises(HclError, match=match):
        hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod", **kwargs)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before


def test_large_files_are_scanned_not_parsed_in_full(tmp_path, monkeypatch):
    text = _resources(1500) + ATLAS
    assert len(text) > _syntax.FULL_PARSE_BYTES
    parsed = []
    real = _syntax._parse_tree
    monkeypatch.setattr(_syntax, "_parse_tree", lambda part: parsed.append(len(part)) or real(part))
    root = _big_root(tmp_path, {"main.tf": text})
    plan = hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod")
    assert plan.files[0].new_text == text.replace('"legacy/app"', '"acme/app-prod"')
    assert parsed and max(parsed) < 100  # only the terraform block, before and after the edit


def test_refuses_two_backends_one_hidden_deep_in_a_large_file(tmp_path):
    root = _big_root(tmp_path, {"main.tf": _resources(1500) + ATLAS + _resources(10),
                                "other.tf": ATLAS.replace("legacy/app", "legacy/other")})
    _refused(root, "2 backend/cloud blocks")


def test_refuses_two_backends_in_one_large_file(tmp_path):
    root = _big_root(tmp_path, {"main.tf": ATLAS + _resources(1500) + ATLAS.replace("atlas", "s3")})
    _refused(root, "2 backend/cloud blocks")


def test_refuses_json_and_hcl_with_a_large_hcl_file(tmp_path):
    root = _big_root(tmp_path, {"main.tf": _resources(1500) + ATLAS,
                                "backend.tf.json": '{"terraform": {"backend": {"atlas": {"name": "legacy/app"}}}}'})
    _refused(root, "both JSON and HCL")


def test_refuses_a_computed_name_in_a_large_file(tmp_path):
    root = _big_root(tmp_path, {"main.tf": _resources(1500) + ATLAS.replace('"legacy/app"', '"legacy/${var.env}"')})
    _refused(root, "is computed")


def test_refuses_a_large_unparseable_file_without_a_backend(tmp_path):
    root = _big_root(tmp_path, {"main.tf": ATLAS, "broken.tf": _resources(1500) + 'resource "a" "b" {\n'})
    _refused(root, r"broken.tf cannot be parsed as HCL at line 9001, column 18 \('\{' is never closed\)")


def test_backend_text_in_heredocs_of_a_large_file_is_not_a_second_backend(tmp_path):
    root = _big_root(tmp_path, {"main.tf": DISTRACTIONS + _resources(1500) + ATLAS})
    plan = hcl.plan_rewrite(root, from_="legacy/app", to="acme/app-prod", target="cloud")
    old, new = plan.files[0].old_text, plan.files[0].new_text
    at = old.index(ATLAS)
    assert new[:at] == old[:at] and 'cloud {' in new[at:]
    assert len(hcl.find_backends(root)) == 1
