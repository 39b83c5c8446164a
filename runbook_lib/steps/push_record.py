"""Step 5's push record: what it committed and pushed (or adopted), kept in the environment's audit trail.

Written by step 5's apply (`05_push.json`), read by its verify and by the way back, which sets it aside
(`05_push.reverted-<sha>.json`) so a later step 5 commits afresh.
"""

from __future__ import annotations

import json
import os
from typing import Any

from runbook_lib.context import StepContext

PUSH_RECORD = "05_push.json"


def push_record(ctx: StepContext) -> dict[str, Any] | None:
    """The push this step made (or adopted) for this environment, from the audit trail, or None."""
    path = ctx.audit_dir / PUSH_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def write_push_record(ctx: StepContext, record: dict[str, Any]) -> None:
    path = ctx.audit_dir / PUSH_RECORD
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def set_aside(ctx: StepContext, commit: str) -> None:
    """Move the push record aside once its commit is reverted (kept as evidence, no longer current)."""
    os.replace(ctx.audit_dir / PUSH_RECORD, ctx.audit_dir / f"05_push.reverted-{commit[:12]}.json")
