"""The batch's confirmations of gated actions: the confirm file, one line per action ("delete <org>/<env>").

Every line is checked against the mapping before any notebook runs (`check_confirmations`): a line that
names no environment of the mapping, or no action a step asks to confirm, would otherwise be ignored until
its step refused. The file's bytes and sha256 go into the batch's trail (`ConfirmFile`).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from runbook_lib import catalog
from runbook_lib.errors import RunbookError
from runbook_lib.mapping import MappingRow

GATED_ACTIONS = catalog.GATED_ACTIONS  # the action each gated step asks to confirm (see runbook_lib.gates)


@dataclass(frozen=True)
class ConfirmFile:
    """A confirm file as read: where it was, its bytes' sha256, and its confirmation lines with their numbers."""

    path: Path
    sha256: str
    data: bytes
    numbered: tuple[tuple[int, str], ...]

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.numbered]


def load_confirm_file(path: str | Path) -> ConfirmFile:
    """Read a confirm file: blank lines and # comments ignored.

    Raises:
        RunbookError: it cannot be read, or is not UTF-8 text.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise RunbookError(f"cannot read the confirm file {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError:
        raise RunbookError(f"the confirm file {path} is not UTF-8 text; write one confirmation a line, like "
                           f"'delete acme-legacy/web.prod'.") from None
    numbered = tuple((number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
                     if line.strip() and not line.strip().startswith("#"))
    return ConfirmFile(path, hashlib.sha256(data).hexdigest(), data, numbered)


def read_confirm_file(path: str | Path | None) -> list[str]:
    """Confirmation lines (like "delete acme-legacy/web.prod"); blank lines and # comments ignored."""
    return load_confirm_file(path).lines if path else []


def check_confirmations(confirm: ConfirmFile, rows: Iterable[MappingRow], mapping_name: str = "the mapping") -> None:
    """Refuse a confirm file with a line that could confirm nothing: not ``<action> <org>/<env>`` with an action
    a step asks to confirm (`GATED_ACTIONS`), or naming no environment of the mapping (all its rows, not only
    those chosen with --env).

    Raises:
        RunbookError: one sentence listing every such line, with the closest real confirmation when there is one.
    """
    actions = sorted(set(GATED_ACTIONS.values()))
    slugs = [row.legacy_slug for row in rows]
    known = {f"{action} {slug}" for action in actions for slug in slugs}
    problems = []
    for number, line in confirm.numbered:
        if line in known:
            continue
        action, _, target = line.partition(" ")
        if action not in actions or "/" not in target.strip() or " " in target.strip():
            problems.append(f"line {number} {line!r} is not '<action> <org>/<env>' with an action of "
                            f"{' or '.join(actions)}")
            continue
        close = difflib.get_close_matches(line, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"line {number} {line!r} names no environment of {mapping_name}{hint}")
    if problems:
        raise RunbookError(f"the confirm file {confirm.path} would confirm nothing on these lines, so nothing was run: "
                           + "; ".join(problems) + "; fix or remove them.")


def confirmation_for(step: str, row: MappingRow, lines: Iterable[str]) -> str:
    """The confirm-file line for this step's gated action on this environment, or ""."""
    action = GATED_ACTIONS.get(step)
    wanted = f"{action} {row.legacy_slug}" if action else None
    return wanted if wanted and wanted in set(lines) else ""
