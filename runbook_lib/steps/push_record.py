"""Step 5's push record: what it committed and pushed (or adopted), kept in the environment's audit trail.

Written by step 5's apply (`05_push.json`), read by its verify and by the way back, which sets it aside
(`05_push.reverted-<sha>.json`) so a later step 5 commits afresh.
"""

from __future__ import annotations

import json
import os
from typing import Any

from runbook_lib.context import StepContext
from runbook_lib.evidence import EvidenceError

PUSH_RECORD = "05_push.json"


#: What step 5's verify, the way back and (through step 5's evidence) step 6 read from the record.
REQUIRED = ("commit", "branch", "repo", "backend_target", "pushed_at", "adopted", "legacy_baseline", "remote_state")
#: Written once apply has found the run of the push (optional: a record from before that, or from an apply
#: stopped while waiting, has none, and the run is then looked for by its commit).
RUN_ID = "run_id"


def push_record(ctx: StepContext) -> dict[str, Any] | None:
    """The push this step made (or adopted) for this environment, from the audit trail, or None.

    Raises:
        EvidenceError: the record lacks a key the later checks rely on (written by an older runbook or
            changed by hand); it is never read with a default, since "still reads no legacy state" must
            be proven, not assumed.
    """
    path = ctx.audit_dir / PUSH_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    missing = [key for key in REQUIRED if key not in record]
    if "remote_state" in record and "still_reads_legacy" not in (record["remote_state"] or {}):
        missing.append("remote_state.still_reads_legacy")
    if missing:
        raise EvidenceError(f"the push record {path} lacks {', '.join(missing)} (written by an older runbook or "
                            f"changed by hand); move it aside and run step 5 in apply mode again: it adopts the "
                            f"commit already on the branch and records it anew")
    return record


def write_push_record(ctx: StepContext, record: dict[str, Any]) -> None:
    path = ctx.audit_dir / PUSH_RECORD
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def set_aside(ctx: StepContext, commit: str) -> None:
    """Move the push record aside once its commit is reverted (kept as evidence, no longer current)."""
    os.replace(ctx.audit_dir / PUSH_RECORD, ctx.audit_dir / f"05_push.reverted-{commit[:12]}.json")
