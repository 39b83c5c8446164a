"""Sandbox fixtures shared by every tier that talks to a running sandbox (loaded from tests/conftest.py).

- `seeded_sandbox` (session): one HTTPS sandbox (trustme CA) seeded with 10 legacy environments
  (see `runbook_lib.sandbox.seed` for names and special cases), started once per test session.
  Treat its seeded objects as read-only: a test that changes things uses its own new organization
  (`new_org`) or a `fresh_sandbox`.
- `sandbox_env` (session): a copy of the seeded sandbox's `sandbox.env` values (ATLAS_ADDRESS,
  ATLAS_TOKEN, TFE_ADDRESS, TFE_TOKEN, SANDBOX_LEGACY_ORG, SANDBOX_GIT_ROOT, TF_CLI_CONFIG_FILE,
  SSL_CERT_FILE, REQUESTS_CA_BUNDLE, SANDBOX_OUTSIDER_TOKEN, ...).
- `sandbox_environ` (function): those values set in `os.environ` for one test (monkeypatched), so
  `Settings.from_env()` and real terraform find the sandbox.
- `new_org` (function): the name of a new organization, owned by the operator, in the seeded sandbox.
- `fresh_sandbox` (function): an unseeded plain-HTTP sandbox of its own (bootstrap users and orgs
  only), for tests that mutate legacy objects, restart, reset or switch faults.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from runbook_lib.rehearsal import batch_environ
from runbook_lib.sandbox import Sandbox

SEEDED_ENVIRONMENTS = 10


@pytest.fixture(scope="session")
def seeded_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One seeded HTTPS sandbox for the whole session."""
    data = tmp_path_factory.mktemp("sandbox-seeded")
    with Sandbox(data, seed=SEEDED_ENVIRONMENTS, tls=True) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def sandbox_env(seeded_sandbox: Sandbox) -> dict[str, str]:
    """The seeded sandbox's `sandbox.env` values (a copy)."""
    return dict(seeded_sandbox.env)


@pytest.fixture
def sandbox_environ(sandbox_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The seeded sandbox's variables set in os.environ for one test."""
    for name, value in sandbox_env.items():
        monkeypatch.setenv(name, value)
    return sandbox_env


def create_organization(sandbox: Sandbox, name: str | None = None, token: str | None = None) -> str:
    """Create a new organization through /api/v2 and return its name."""
    name = name or f"rehearsal-{uuid.uuid4().hex[:10]}"
    session = requests.Session()
    # The sandbox limits each token to 30 requests/s like real TFE; a 429 never reached a handler,
    # so retrying it (after Retry-After) is safe even for a POST.
    retry = Retry(total=10, connect=0, read=0, other=0, status=10, status_forcelist=[429], allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    response = session.post(
        f"{sandbox.address}/api/v2/organizations",
        headers={"Authorization": f"Bearer {token or sandbox.operator_token}",
                 "Content-Type": "application/vnd.api+json"},
        json={"data": {"type": "organizations", "attributes": {"name": name, "email": "operator@acme.example"}}},
        verify=sandbox.ca_file or True, timeout=30)
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def new_org(seeded_sandbox: Sandbox) -> str:
    """A new organization of the operator in the seeded sandbox (unique per test)."""
    return create_organization(seeded_sandbox)


@pytest.fixture
def fresh_sandbox(tmp_path) -> Iterator[Sandbox]:  # noqa: ANN001 - pytest's tmp_path
    """An unseeded sandbox of this test's own (plain HTTP, in-process)."""
    with Sandbox(tmp_path / "sandbox") as sandbox:
        yield sandbox


@contextmanager
def sandbox_in_environ(data_dir: Path, *, seed: int) -> Iterator[Sandbox]:
    """A seeded HTTPS sandbox of its own, its batch variables (plus VCS token and git base) in os.environ
    while it runs; for a module-scoped fixture, where `monkeypatch` is not available."""
    with Sandbox(data_dir, seed=seed, tls=True) as sandbox:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in batch_environ(sandbox.env).items():
                patch.setenv(name, value)
            yield sandbox


def make_1x_ready(sandbox: Sandbox, env: str, legacy_org: str = "acme-legacy") -> None:
    """Commit Terraform 1.x syntax to a seeded environment's configuration, then wait for its legacy run.

    The seeded configurations use 0.11's `triggers { }` block; 1.x wants the argument `triggers = { }`.
    The environment is still linked, so the push starts a legacy run; it must end before step 3. (Test set-up:
    the sandbox's store is read directly; the legacy API has no run list.)
    """
    import tempfile
    import time
    from pathlib import Path

    from runbook_lib import git

    store = sandbox.store
    row = store.find_environment(legacy_org, env)
    branch = row["vcs_branch"] or "master"
    with tempfile.TemporaryDirectory() as scratch:
        path = git.clone(git.repo_url(row["vcs_repo"]), Path(scratch) / "r", branch)
        main = path / (row["vcs_working_directory"] or "") / "main.tf"
        main.write_text(main.read_text().replace("triggers {", "triggers = {"))
        sha = git.commit_all(path, "Terraform 1.x syntax: triggers is an argument")
        git.push(path, branch)
    # The push reaches the legacy environment through the repository's hook, a moment later: wait until its
    # run exists and has ended (not only "no current run", which is also true before the run starts).
    deadline = time.monotonic() + 120
    while (store.current_legacy_run(row["id"])
           or not any(r["commit_sha"] == sha for r in store.list_legacy_runs(row["id"]))):
        assert time.monotonic() < deadline, "the legacy run of the 1.x-syntax commit did not finish"
        time.sleep(0.5)


def upgraded_state(body: bytes) -> bytes:
    """A 0.11 state after the upgrade an operator runs before using it with Terraform 1.x, at the next serial.

    Terraform 0.14 and later refuse a state written before 0.13 ("Invalid legacy provider address"); the 0.13
    upgrade qualifies its provider addresses. No 0.12/0.13 binary is here, so the bundled 1.x does that part
    in a scratch folder: `terraform state replace-provider registry.terraform.io/-/X
    registry.terraform.io/hashicorp/X` for each provider, after dropping the data sources (1.x cannot decode
    0.11's flatmap of their dynamic attributes; every plan reads them again).
    """
    import json
    import re
    import tempfile
    from pathlib import Path

    from runbook_lib import terraform

    doc = json.loads(body)
    assert doc["version"] == 3, "only a 0.11 state needs this upgrade"
    providers = set()
    for module in doc["modules"]:
        module["resources"] = {k: v for k, v in (module.get("resources") or {}).items() if not k.startswith("data.")}
        for resource in module["resources"].values():
            found = re.search(r"(?:^|\.)provider\.([A-Za-z0-9_-]+)", resource.get("provider") or "")
            if found:
                providers.add(found.group(1))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "terraform.tfstate"
        path.write_text(json.dumps(doc))
        for name in sorted(providers):
            terraform.run(terraform.terraform_1x(), ["state", "replace-provider", "-auto-approve", "-no-color",
                                                     f"registry.terraform.io/-/{name}",
                                                     f"registry.terraform.io/hashicorp/{name}"], cwd=scratch)
        upgraded = json.loads(path.read_text())
    upgraded["serial"] = doc["serial"] + 1  # the next write of the same lineage
    return json.dumps(upgraded, indent=2).encode()


def upgrade_legacy_state(sandbox: Sandbox, env: str, legacy_org: str = "acme-legacy") -> dict:
    """`upgraded_state` done on the legacy side before the migration, through the documented state API: GET,
    then PUT with its Content-MD5, as the atlas backend of Terraform 0.13/0.14 wrote it (the last versions that
    had that backend: terraform's CHANGELOG for v0.15.0). Returns the new state's header."""
    import base64
    import hashlib
    import json

    import requests

    url = f"{sandbox.env['ATLAS_ADDRESS']}/api/v1/terraform/state/{legacy_org}/{env}"
    session = requests.Session()
    session.verify = sandbox.ca_file or True
    session.headers["X-Atlas-Token"] = sandbox.operator_token
    got = session.get(url, timeout=30)
    assert got.status_code == 200, got.text
    body = upgraded_state(got.content)
    put = session.put(url, data=body, timeout=30, headers={
        "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(), "Content-Type": "application/json"})
    assert put.status_code == 200, put.text
    doc = json.loads(body)
    return {k: doc[k] for k in ("version", "terraform_version", "serial", "lineage")}


def operator_mapping_rows(sandbox: Sandbox, names, new_org: str = "acme") -> list:
    """Mapping rows for seeded environments, as notebook 00's survey and then the operator write them: what the
    legacy host shows (the Terraform version from the state, repository and branch from the latest configuration
    version: `inventory.fill_from_host`), then the facts an operator reads off the legacy UI
    (`rehearsal.operator_rows`)."""
    from runbook_lib import inventory
    from runbook_lib.legacy import LegacyClient
    from runbook_lib.mapping import MappingRow, workspace_name_for
    from runbook_lib.rehearsal import operator_rows
    from runbook_lib.settings import Settings

    rows = [MappingRow(sandbox.legacy_org, name, new_org, workspace_name_for(name)) for name in names]
    legacy = LegacyClient(Settings.from_env(dict(sandbox.env)), read_only=True)
    rows = inventory.fill_from_host(rows, inventory.legacy_environments(legacy, sandbox.legacy_org, rows))
    return operator_rows(sandbox, rows)


def write_operator_mapping(sandbox: Sandbox, audit_root: Path, names, new_org: str = "acme") -> Path:
    """`<audit_root>/mapping.csv` for seeded environments (`operator_mapping_rows`): where the steps read them."""
    from runbook_lib.mapping import write_csv

    path = Path(audit_root) / "mapping.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(operator_mapping_rows(sandbox, names, new_org), path)
    return path


def start_batch_cli(out, mapping_csv, params: dict, *, batch: str, jobs: int = 1, steps: str = "0-6",
                    confirm_file=None):
    """`tfe-runbook run --mode apply` in a child process (its own session, so a test can SIGKILL it whole)."""
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "runbook_lib.cli", "run", "--mapping", str(mapping_csv), "--mode", "apply",
            "--steps", steps, "--jobs", str(jobs), "--out", str(out), "--batch", batch]
    if confirm_file is not None:
        args += ["--confirm-file", str(confirm_file)]
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    return subprocess.Popen(args, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def step_running(batch_dir, step: str) -> bool:
    """Whether the batch's ledger shows `step` running for some environment (False while it cannot be read)."""
    import sqlite3
    from pathlib import Path

    path = Path(batch_dir) / "ledger.sqlite"
    if not path.exists():
        return False
    try:
        db = sqlite3.connect(path, timeout=1)
        try:
            return bool(db.execute("SELECT 1 FROM step_runs WHERE step = ? AND status = 'running'", (step,)).fetchone())
        finally:
            db.close()
    except sqlite3.OperationalError:
        return False
