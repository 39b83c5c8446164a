"""Through real notebooks: a token with a pasted line break is refused before any header is built and is in
no executed notebook, HTML copy or ledger row; the batch's evidence is readable by its owner only."""

from __future__ import annotations

import os
import stat

import pytest

from runbook_lib.accounts import HostCheckError
from runbook_lib.batch import STEPS, BatchRunner
from runbook_lib.mapping import propose


def test_token_with_line_break_is_named_not_shown_and_evidence_is_private(tmp_path, rehearsal, monkeypatch):
    token = os.environ["TFE_TOKEN"]
    first, second = token[:14], token[14:]
    monkeypatch.setenv("TFE_TOKEN", f"{first}\n{second}")
    monkeypatch.setenv("TFE_RUNBOOK_LOCK_DIR", str(tmp_path / "locks"))
    rows = propose("acme-legacy", ["dns-prod"], "acme")
    # The batch's own host check refuses it first, in one sentence naming the variable, before anything is written.
    with pytest.raises(HostCheckError, match="TFE_TOKEN contains a control character") as caught:
        BatchRunner(rows, STEPS[:1], mode="plan", out=tmp_path / "runs", batch_id="b", parameters={}).run()
    assert first not in str(caught.value) and second not in str(caught.value)
    assert not (tmp_path / "runs").exists()
    # Without it (a notebook run by hand makes the same refusal), the step refuses in the notebook.
    result = BatchRunner(rows, STEPS[:1], mode="plan", out=tmp_path / "runs", batch_id="b", parameters={},
                         check_hosts=False).run()
    assert result.outcomes[0].status == "failed"
    batch = result.batch_dir
    notebook = (batch / "acme-legacy__dns-prod" / "00_preflight_inventory.ipynb").read_text()
    assert "TFE_TOKEN contains a control character" in notebook  # the variable is named
    files = [p for p in batch.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".ipynb", ".html", ".sqlite", ".json"}
    for path in files:
        data = path.read_bytes()
        assert first.encode() not in data and second.encode() not in data, path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in [batch, *(p for p in batch.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
