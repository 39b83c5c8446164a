"""What one step records and a later step relies on, as frozen dataclasses.

A step writes these facts into its ledger evidence (`to_evidence`) and a later step reads them back
through the same type (`from_evidence`), so a key renamed on one side is a clear refusal on the other,
never a silent default. The irreversible step 6 rests on three of them:

- `StateReaders` (step 0, ``00_preflight_inventory``): which legacy environments this one's
  configuration reads through ``terraform_remote_state``;
- `MigratedState` (step 3, ``03_migrate_state``): the sha256 of the legacy state that was migrated;
- `CutOver` (step 5, ``05_commit_and_verify``): the run of the pushed commit, its plan counts, and the
  legacy sources the configuration still reads after the push.

Step 5's way back rests on `VcsLink` (step 4, ``04_disable_legacy_vcs``): the VCS link the legacy
environment had before it was unlinked, kept in the audit trail and in step 4's evidence.

Ledgers written by an older runbook may lack a key: reading them raises `EvidenceError` naming the
step, the environment, the missing keys and the fix (run that step again so it records them). A
missing fact is never read as "nothing there": step 6 refuses instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping

from runbook_lib import catalog
from runbook_lib.errors import LedgerError

#: How the inventory table shows a list of environment slugs in one cell.
SLUG_SEPARATOR = ", "


class EvidenceError(LedgerError):
    """A step's recorded evidence lacks a key (or holds the wrong kind of value) a later step relies on."""


def join_slugs(slugs: list[str] | tuple[str, ...]) -> str:
    """Environment slugs as one table cell (`a/b, c/d`); `split_slugs` reads it back."""
    return SLUG_SEPARATOR.join(slugs)


def split_slugs(cell: str | None) -> tuple[str, ...]:
    """The slugs of a table cell written by `join_slugs` (empty or missing cell: none)."""
    return tuple(n.strip() for n in (cell or "").split(SLUG_SEPARATOR.strip()) if n.strip())


def _require(evidence: Mapping[str, Any] | None, cls: type, environment: str) -> dict[str, Any]:
    """The evidence's values for every field of `cls`, or EvidenceError naming every key missing."""
    names = [f.name for f in fields(cls)]
    data = dict(evidence or {})
    missing = [n for n in names if n not in data]
    if missing:
        raise EvidenceError(
            f"step {cls.STEP}'s evidence for {environment} lacks {', '.join(missing)} (recorded keys: "
            f"{', '.join(sorted(data)) or 'none'}); it was recorded by an older runbook or changed by hand: "
            f"run step {cls.STEP} again so it records them")
    return {n: data[n] for n in names}


def _slugs(value: Any, key: str, step: str, environment: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise EvidenceError(f"step {step}'s evidence for {environment}: {key} is {value!r}, not a list of "
                            f"environment names; run step {step} again")
    return tuple(value)


@dataclass(frozen=True)
class StateReaders:
    """Step 0: the legacy environments whose state this environment's configuration reads."""

    STEP: ClassVar[str] = catalog.PREFLIGHT
    reads_state_of: tuple[str, ...]

    def to_evidence(self) -> dict[str, Any]:
        return {"reads_state_of": list(self.reads_state_of)}

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any] | None, environment: str) -> "StateReaders":
        data = _require(evidence, cls, environment)
        return cls(_slugs(data["reads_state_of"], "reads_state_of", cls.STEP, environment))


@dataclass(frozen=True)
class MigratedState:
    """Step 3: the legacy state that was migrated (its sha256, for step 6's final comparison)."""

    STEP: ClassVar[str] = catalog.MIGRATE_STATE
    legacy_sha256: str

    def to_evidence(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any] | None, environment: str) -> "MigratedState":
        data = _require(evidence, cls, environment)
        if not isinstance(data["legacy_sha256"], str) or len(data["legacy_sha256"]) != 64:
            raise EvidenceError(f"step {cls.STEP}'s evidence for {environment}: legacy_sha256 is "
                                f"{data['legacy_sha256']!r}, not a sha256; run step {cls.STEP} again")
        return cls(data["legacy_sha256"])


@dataclass(frozen=True)
class PlanCounts:
    """What a run's plan would add, change and destroy."""

    add: int
    change: int
    destroy: int

    @property
    def any(self) -> bool:
        return bool(self.add or self.change or self.destroy)


@dataclass(frozen=True)
class CutOver:
    """Step 5: the run of the pushed commit, what it planned, and what the configuration still reads."""

    STEP: ClassVar[str] = catalog.COMMIT_AND_VERIFY
    run_id: str
    commit: str
    has_changes: bool
    plan: PlanCounts
    still_reads_legacy: tuple[str, ...]

    def to_evidence(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "commit": self.commit, "has_changes": self.has_changes,
                "plan": asdict(self.plan), "still_reads_legacy": list(self.still_reads_legacy)}

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any] | None, environment: str) -> "CutOver":
        data = _require(evidence, cls, environment)
        plan = data["plan"]
        if not isinstance(plan, Mapping) or any(not isinstance(plan.get(k), int) for k in ("add", "change", "destroy")):
            raise EvidenceError(f"step {cls.STEP}'s evidence for {environment}: plan is {plan!r}, not the counts "
                                f"add, change and destroy; run step {cls.STEP} again")
        if not isinstance(data["has_changes"], bool):
            raise EvidenceError(f"step {cls.STEP}'s evidence for {environment}: has_changes is "
                                f"{data['has_changes']!r}, not true or false; run step {cls.STEP} again")
        return cls(str(data["run_id"]), str(data["commit"]), data["has_changes"],
                   PlanCounts(plan["add"], plan["change"], plan["destroy"]),
                   _slugs(data["still_reads_legacy"], "still_reads_legacy", cls.STEP, environment))


@dataclass(frozen=True)
class VcsLink:
    """Step 4: the VCS link the legacy environment had before it was unlinked (the way back re-links it)."""

    STEP: ClassVar[str] = catalog.DISABLE_LEGACY_VCS
    repo: str
    branch: str | None
    working_directory: str | None

    def to_evidence(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any] | None, where: str) -> "VcsLink":
        """Read a link from step 4's record or evidence (`where` names which, for the message).

        Raises:
            EvidenceError: a key is missing or the repository is empty. Step 4 records the link only while
                it is still there, so the fix is the archive's copy or re-linking by hand.
        """
        data = dict(evidence) if isinstance(evidence, Mapping) else {}
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing or not data.get("repo"):
            raise EvidenceError(f"{where}: the VCS link recorded before step {cls.STEP} lacks "
                                f"{', '.join(missing) or 'a repository'} (recorded: {evidence!r}); restore the "
                                f"file from the batch archive, or re-link the legacy environment by hand")
        return cls(str(data["repo"]), data["branch"], data["working_directory"])


@dataclass(frozen=True)
class LegacyBaseline:
    """Step 4: what the legacy host showed when the operator confirmed the unlink, for step 5 to compare with.

    A still-linked environment answers a push with a new configuration version (its VCS ingress) and, when
    that run applies, a new state. Step 5 reads both after its push: the same `configuration_version` and the
    same state `md5` prove the legacy side did not react.

    Attributes:
        configuration_version: the latest configuration version's number (None: the host answered 404, no
            version or not visible; the state read below tells those apart).
        state_md5, state_serial: the state's md5 (hex) and serial at that moment.
        taken_at: when (UTC, ISO 8601).
    """

    STEP: ClassVar[str] = catalog.DISABLE_LEGACY_VCS
    configuration_version: int | None
    state_md5: str
    state_serial: int | None
    taken_at: str

    def to_evidence(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_evidence(cls, evidence: Mapping[str, Any] | None, environment: str) -> "LegacyBaseline":
        data = _require(evidence, cls, environment)
        version = data["configuration_version"]
        if version is not None and not isinstance(version, int) or not isinstance(data["state_md5"], str) \
                or len(data["state_md5"]) != 32:
            raise EvidenceError(f"step {cls.STEP}'s evidence for {environment}: the baseline "
                                f"{ {k: data[k] for k in ('configuration_version', 'state_md5')} } is malformed; run "
                                f"step {cls.STEP} again")
        return cls(version, data["state_md5"], data["state_serial"], str(data["taken_at"]))
