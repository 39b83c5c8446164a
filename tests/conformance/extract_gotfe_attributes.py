"""Regenerate `gotfe_attributes.json`: the attribute names go-tfe's response structs read, per JSON:API type.

For each resource type the sandbox answers with, the struct go-tfe decodes it into is read from the pinned
go-tfe source (the `jsonapi:"primary,<type>"` struct named below) and every `jsonapi:"attr,<name>,..."` tag of its
fields is kept. Facts only: the names are the real API's, no code is copied.

    python tests/conformance/extract_gotfe_attributes.py [../shared/conformance/go-tfe/src.tar.xz]
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "conformance" / "go-tfe" / "src.tar.xz"
FIXTURE = HERE / "gotfe_attributes.json"
#: JSON:API type -> (go-tfe file, struct name)
STRUCTS = {
    "organizations": ("organization.go", "Organization"),
    "workspaces": ("workspace.go", "Workspace"),
    "state-versions": ("state_version.go", "StateVersion"),
    "vars": ("variable.go", "Variable"),
    "runs": ("run.go", "Run"),
    "plans": ("plan.go", "Plan"),
    "configuration-versions": ("configuration_version.go", "ConfigurationVersion"),
    "oauth-clients": ("oauth_client.go", "OAuthClient"),
    "oauth-tokens": ("oauth_token.go", "OAuthToken"),
}
#: Attributes go-tfe does not decode but the API documentation's own sample responses show (so a real TFE
#: answers with them): type -> {attribute: page of hashicorp/terraform-docs-common
#: website/docs/cloud-docs/api-docs/ whose sample response has it}.
DOCUMENTED = {
    "organizations": {"name": "organizations.mdx"},
    "state-versions": {"size": "state-versions.mdx", "intermediate": "state-versions.mdx"},
    "workspaces": {"latest-change-at": "workspaces.mdx", "locked-reason": "workspaces.mdx",
                   "source": "workspaces.mdx", "vcs-repo-identifier": "workspaces.mdx"},
    "runs": {"canceled-at": "run.mdx", "trigger-reason": "run.mdx"},
    "plans": {"execution-details": "plans.mdx"},
}
_ATTR = re.compile(r'jsonapi:"attr,([^,"]+)')


def struct_attributes(source: str, struct: str) -> list[str]:
    """The `attr` names of one Go struct's fields (in source order, without duplicates)."""
    start = re.search(rf"^type {struct} struct {{$", source, re.M)
    if start is None:
        raise SystemExit(f"struct {struct} not found")
    body = source[start.end():source.index("\n}\n", start.end())]
    names: list[str] = []
    for name in _ATTR.findall(body):
        if name not in names:
            names.append(name)
    return names


def extract(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        def read(name: str) -> str:
            member = tar.extractfile(f"go-tfe/{name}")
            assert member is not None
            return member.read().decode()
        version = re.search(r"v\d+\.\d+\.\d+", read("README.md") + read("CHANGELOG.md"))
        types = {kind: struct_attributes(read(file), struct) for kind, (file, struct) in STRUCTS.items()}
    return {"source": "hashicorp/go-tfe", "tag": version.group(0) if version else None, "archive": "shared/conformance/go-tfe/src.tar.xz",
            "note": "attribute names of the response structs; regenerate with extract_gotfe_attributes.py",
            "types": types, "documented": DOCUMENTED}


if __name__ == "__main__":
    archive = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    FIXTURE.write_text(json.dumps(extract(archive), indent=1) + "\n")
    print(f"wrote {FIXTURE}")
