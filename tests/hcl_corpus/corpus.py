"""The backend-rewrite corpus: real-world-shaped configurations, each with its expected result.

Layout of one case, `tests/hcl_corpus/<case>/`:
  input/          the configuration as found (a root module, or a repository with several roots)
  expected.json   description; `find` / `remote_state` = expected rows of find_backends /
                  find_remote_state_refs on input/; `operation` (rewrite | add_legacy | remote_state) and
                  its `args`; `outcome` (edit | noop | refuse) with a `message` substring of the plan message
                  or the refusal; `terraform` ("0.11", "1.x" or null): which terraform must accept the result
                  (`terraform_root` when that is not input/ itself)
  expected/       for an edit: the exact text of every file the apply changes or creates (paths as in input/);
                  every other file must stay byte-identical

Shared by tests/unit/test_hcl_corpus.py and tests/terraform/test_hcl_terraform_accepts.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from runbook_lib import hcl

CORPUS_DIR = Path(__file__).resolve().parent


def case_names() -> list[str]:
    return sorted(p.name for p in CORPUS_DIR.iterdir() if (p / "expected.json").is_file())


def load_case(name: str) -> dict[str, Any]:
    return json.loads((CORPUS_DIR / name / "expected.json").read_text(encoding="utf-8"))


def copy_input(name: str, dest: Path) -> Path:
    """Copy a case's input/ to `dest` (created) and return it."""
    shutil.copytree(CORPUS_DIR / name / "input", dest)
    return dest


def make_plan(spec: dict[str, Any], work: Path) -> hcl.RewritePlan:
    """Run the case's planning call against a copy of its input."""
    args = spec["args"]
    root = work / args.get("root", ".")
    if spec["operation"] == "rewrite":
        return hcl.plan_rewrite(root, from_=args["from"], to=args["to"], target=args.get("target", "atlas"),
                                hostname=args.get("hostname"))
    if spec["operation"] == "add_legacy":
        return hcl.plan_add_legacy_backend(root, from_=args["from"], address=args.get("address"))
    if spec["operation"] == "remote_state":
        return hcl.plan_remote_state_rewrite(root, from_=args["from"], to=args["to"])
    raise ValueError(f"unknown operation {spec['operation']!r}")


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` by relative path, as bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def expected_files(name: str) -> dict[str, bytes]:
    expected = CORPUS_DIR / name / "expected"
    return snapshot(expected) if expected.is_dir() else {}


def records(frame) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts (numpy scalars and NaN turned into JSON-comparable values)."""
    rows = []
    for row in frame.to_dict(orient="records"):
        rows.append({key: (value.item() if hasattr(value, "item") else value) for key, value in row.items()})
    return rows
