"""The order of a batch: which environment may start which phase, given who reads whose state.

A batch runs each environment's steps in three phases (`batch.PHASE_ENDS`): migrate (steps 0-3: the
workspace and its state), cut over (4-5: the legacy VCS link and the pushed backend change) and delete
(6). Two rules of the migration order them across environments:

- A cut-over repoints the configuration's `terraform_remote_state` sources to the workspaces that hold
  the states it reads, so X is cut over only once every environment of the batch whose state X reads
  has finished its migrate phase.
- A legacy environment is deleted only once every environment of the batch that reads its state has
  finished its cut-over (it no longer reads the legacy state).

Who reads whose state is step 0's evidence (`evidence.StateReaders`), known once an environment's
migrate phase has run (or from an earlier batch's ledger). Where it is unknown the rule falls back to
the whole batch: X is cut over only after every migration, and deleted only after every cut-over. So a
batch without step 0 evidence runs strictly phase by phase; one with it overlaps the phases, and the
runs of early cut-overs wait on the host while later environments still migrate.
"""

from __future__ import annotations

from typing import Callable, Iterable

MIGRATE, CUT_OVER, DELETE = 0, 1, 2


class Schedule:
    """The phases of each environment of a batch, started when their rules allow (see the module).

    Args:
        environments: the batch's environments (`<org>/<env>`), in mapping order.
        phases: the phases the batch's steps cover (a resumed batch may run only some).
        reads: the environments whose state an environment reads, or None while that is unknown; asked
            again until it is known.
        caps: at most this many environments in a phase at once (`{CUT_OVER: 10}`); others uncapped.
    """

    def __init__(self, environments: Iterable[str], phases: Iterable[int],
                 reads: Callable[[str], frozenset[str] | None], caps: dict[int, int] | None = None) -> None:
        self.environments = list(environments)
        self.phases = sorted(set(phases))
        self.caps = dict(caps or {})
        self._reads_of = reads
        self._reads: dict[str, frozenset[str]] = {}
        self._started: set[tuple[str, int]] = set()
        self._finished: set[tuple[str, int]] = set()

    def reads(self, environment: str) -> frozenset[str] | None:
        if environment not in self._reads:
            known = self._reads_of(environment)
            if known is None:
                return None
            self._reads[environment] = frozenset(known)
        return self._reads[environment]

    def start(self, environment: str, phase: int) -> None:
        self._started.add((environment, phase))

    def finish(self, environment: str, phase: int) -> None:
        self._finished.add((environment, phase))

    def done(self) -> bool:
        return len(self._finished) == len(self.environments) * len(self.phases)

    def running(self) -> int:
        return len(self._started - self._finished)

    def _over(self, environment: str, phase: int) -> bool:
        """Whether `environment` has finished `phase` (a phase the batch does not run is over)."""
        return phase not in self.phases or (environment, phase) in self._finished

    def _may_start(self, environment: str, phase: int) -> bool:
        earlier = [p for p in self.phases if p < phase]
        if earlier and not self._over(environment, earlier[-1]):
            return False
        others = [e for e in self.environments if e != environment]
        if phase == CUT_OVER:
            reads = self.reads(environment)
            sources = others if reads is None else [e for e in others if e in reads]
            return all(self._over(e, MIGRATE) for e in sources)
        if phase == DELETE:
            for other in others:
                if self._over(other, CUT_OVER):
                    continue
                reads = self.reads(other) if self._over(other, MIGRATE) else None
                if reads is None or environment in reads:
                    return False
        return True

    def ready(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Up to `limit` (environment, phase) pairs that may start now, within each phase's cap: later
        phases first (a cut-over mostly waits for the host's run, so it takes a slot before another
        migration), then in mapping order."""
        found: list[tuple[str, int]] = []
        running = [p for _, p in self._started - self._finished]
        for phase in reversed(self.phases):
            room = self.caps.get(phase, len(self.environments)) - running.count(phase)
            for environment in self.environments:
                if room <= 0 or (limit is not None and len(found) >= limit):
                    break
                if (environment, phase) not in self._started and self._may_start(environment, phase):
                    found.append((environment, phase))
                    room -= 1
        return found
