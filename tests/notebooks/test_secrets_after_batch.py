"""After a full batch and its archive, no token is anywhere in the evidence (issue 10, secrets)."""

from __future__ import annotations

import os
import stat
import tarfile
import uuid

from runbook_lib import audit
from runbook_lib.batch import STEPS, BatchRunner
from runbook_lib.mapping import propose
from runbook_lib.rehearsal import operator_rows
from runbook_lib.secrets import scan_bytes


def test_no_token_in_notebooks_html_ledger_manifest_or_archive(tmp_path, rehearsal, seeded_sandbox):
    tokens = [os.environ["ATLAS_TOKEN"], os.environ["TFE_TOKEN"], os.environ["VCS_OAUTH_TOKEN"],
              seeded_sandbox.outsider_token]
    org = f"sec-{uuid.uuid4().hex[:8]}"
    rows = operator_rows(seeded_sandbox, propose("acme-legacy", ["dns-prod"], org))  # the environment with sensitive variables
    steps = [s for s in STEPS if s < "04"]  # steps 4-6 are added to this proof once they land
    result = BatchRunner(rows, steps, mode="apply", out=tmp_path / "runs", batch_id="b",
                         parameters={**rehearsal, "accept_empty_sensitive": True}).run()
    assert result.ok, result.frame().to_string()
    batch = result.batch_dir
    files = [p for p in batch.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".ipynb", ".html", ".sqlite", ".json", ".tfstate"} <= kinds
    findings = [f for p in files for f in scan_bytes(p.read_bytes(), str(p.relative_to(batch)), tokens)]
    assert findings == []
    for backup in batch.rglob("state/*"):
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600, backup
    archived = audit.archive(batch)
    with tarfile.open(archived.path) as tar:
        names = tar.getnames()
        assert not any("/state/" in n for n in names)
        for member in tar.getmembers():
            if member.isfile():
                assert scan_bytes(tar.extractfile(member).read(), member.name, tokens) == []
    assert audit.verify_archive(archived.path) == []
