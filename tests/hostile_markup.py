"""Markup a hostile legacy user plants, and a scan of HTML for anything of it that came alive.

A user with write access to one legacy environment controls a variable key, the VCS branch and working
directory, the state (its lineage, its `terraform_remote_state` sources). `plant` writes the payloads
below into a sandbox's legacy environment through its store; `live_markup` parses an HTML file (Python's
own HTML parser, as a browser tokenizes) and lists every element or attribute the payloads made live;
`shown_text` is the page's text, where the payloads must appear, escaped, as text (so a scan that finds
nothing is not blind).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

#: One payload per field, each with a marker of its own so a finding names the field it came from.
VARIABLE_KEY = "<img src=x onerror=alert('key')>"
BRANCH = "\"><svg onload=alert('branch')>"
WORKING_DIRECTORY = "<img src=x onerror=alert('wd')>"
LINEAGE = "x</style><img src=x onerror=alert('lineage')>"
REMOTE_STATE = "acme-legacy/\"><svg onload=alert('remote')>"
PAYLOADS = {"variable key": VARIABLE_KEY, "branch": BRANCH, "working directory": WORKING_DIRECTORY,
            "lineage": LINEAGE, "remote state": REMOTE_STATE}
#: What only a payload would put into a page: script in attributes, or the payloads' own functions.
MARKERS = ("alert(",)


@dataclass
class Planted:
    """What `plant` wrote: field -> payload, and the mapping columns an operator would fill in (the
    inventory reads the working directory, sensitive variable names and teams from the mapping file)."""

    payloads: dict[str, str]
    mapping_columns: dict[str, str] = field(default_factory=dict)


def _hostile_state(body: bytes) -> bytes:
    """The environment's state with the hostile lineage, one serial on, and a `terraform_remote_state`
    reading a hostile name through the atlas backend (v3, as Terraform 0.11 writes it; v4 alike)."""
    doc = json.loads(body)
    doc["lineage"] = LINEAGE
    doc["serial"] = int(doc.get("serial") or 0) + 1
    if "modules" in doc:  # format 3: flat attributes, `config.name` for the `config = {...}` map
        doc["modules"][0].setdefault("resources", {})["data.terraform_remote_state.planted"] = {
            "type": "terraform_remote_state", "depends_on": [], "deposed": [], "provider": "provider.terraform",
            "primary": {"id": "2018-03-01 10:00:00 +0000 UTC", "meta": {}, "tainted": False,
                        "attributes": {"backend": "atlas", "config.%": "1", "config.name": REMOTE_STATE,
                                       "environment": "default", "id": "2018-03-01 10:00:00 +0000 UTC"}}}
    else:  # format 4
        doc.setdefault("resources", []).append({
            "mode": "data", "type": "terraform_remote_state", "name": "planted",
            "provider": "provider[\"terraform.io/builtin/terraform\"]",
            "instances": [{"attributes": {"backend": "atlas", "config": {"value": {"name": REMOTE_STATE}}}}]})
    return json.dumps(doc, indent=2).encode()


def plant(sandbox: Any, org: str, env: str) -> Planted:
    """Write every payload into the legacy environment `org/env` of an in-process sandbox's store.

    Where the inventory reads each fact: the latest configuration version's metadata (`git_branch`, the
    branch) and its Terraform variables (the variable key, from the environment's variables), the state (its
    lineage and a `terraform_remote_state` source); the working directory comes from the mapping file
    (`Planted.mapping_columns`, which the caller writes into the mapping as an operator would).
    """
    store = sandbox.store
    environment = store.find_environment(org, env)
    assert environment is not None, f"{org}/{env} is not in the sandbox"
    with store.tx():
        store.set_legacy_var(environment["id"], VARIABLE_KEY, "planted", category="terraform")
        store.create_legacy_config_version(environment["id"], {
            "git_branch": BRANCH, "remote_type": "github", "remote_slug": environment["vcs_repo"],
            "commit_sha": "0" * 40})
    current = store.current_legacy_state(environment["id"])
    assert current is not None, f"{org}/{env} has no state to plant into"
    assert store.put_legacy_state(environment["id"], _hostile_state(bytes(current["body"])))
    return Planted(dict(PAYLOADS), {"working_directory": WORKING_DIRECTORY, "sensitive_variables": "",
                                    "env_variables": "", "teams": ""})


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.text: list[str] = []
        self._raw: list[str] = []  # the element whose text is script or style

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        where = f"<{tag} {' '.join(f'{k}={v!r}' for k, v in attrs)}>"
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.found.append(f"event handler {name} in {where}")
            if value and any(m in value for m in MARKERS):
                self.found.append(f"payload in attribute {name} of {where}")
            if name.lower() in ("href", "src", "action", "formaction", "xlink:href") and value and \
                    value.strip().lower().startswith(("javascript:", "data:", "vbscript:")):
                self.found.append(f"script link in {where}")
        if tag == "img" or (tag == "svg" and ("class", "timeline") not in attrs) or tag in ("iframe", "object",
                                                                                          "embed"):
            self.found.append(f"injected element {where}")
        if tag in ("script", "style"):
            self._raw.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("script", "style"):
            self._raw.pop()

    def handle_endtag(self, tag: str) -> None:
        if self._raw and tag == self._raw[-1]:
            self._raw.pop()

    def handle_data(self, data: str) -> None:
        if self._raw:
            if any(m in data for m in MARKERS):
                self.found.append(f"payload inside <{self._raw[-1]}>: {data.strip()[:120]!r}")
            return
        self.text.append(data)


def live_markup(page: str) -> list[str]:
    """Every element, attribute or script the payloads made live in an HTML page (empty: none)."""
    scan = _Scan()
    scan.feed(page)
    scan.close()
    return scan.found


def shown_text(page: str) -> str:
    """The page's text as a reader sees it (character references decoded; scripts and styles left out)."""
    scan = _Scan()
    scan.feed(page)
    scan.close()
    return "".join(scan.text)
