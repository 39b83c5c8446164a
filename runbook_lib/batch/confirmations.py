"""The batch's confirmations of gated actions: the confirm file, one line per action ("delete <org>/<env>")."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from runbook_lib import catalog
from runbook_lib.errors import RunbookError
from runbook_lib.mapping import MappingRow

GATED_ACTIONS = catalog.GATED_ACTIONS  # the action each gated step asks to confirm (see runbook_lib.gates)


def read_confirm_file(path: str | Path | None) -> list[str]:
    """Confirmation lines (like "delete acme-legacy/web-prod"); blank lines and # comments ignored."""
    if not path:
        return []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RunbookError(f"cannot read the confirm file {path}: {exc.strerror}.") from exc
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def confirmation_for(step: str, row: MappingRow, lines: Iterable[str]) -> str:
    """The confirm-file line for this step's gated action on this environment, or ""."""
    action = GATED_ACTIONS.get(step)
    wanted = f"{action} {row.legacy_slug}" if action else None
    return wanted if wanted and wanted in set(lines) else ""

