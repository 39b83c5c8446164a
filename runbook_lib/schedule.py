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

import bisect
import heapq
from collections import Counter
from typing import Callable, Iterable, Iterator

MIGRATE, CUT_OVER, DELETE = 0, 1, 2


class Schedule:
    """The phases of each environment of a batch, started when their rules allow (see the module).

    Args:
        environments: the batch's environments (`<org>/<env>`), in mapping order.
        phases: the phases the batch's steps cover (a resumed batch may run only some).
        reads: the environments whose state an environment reads, or None while that is unknown. Asked when
            an environment finishes its migrate phase (or at the start, when the batch does not migrate).
        caps: at most this many environments in a phase at once (`{CUT_OVER: 10}`); others uncapped.

    What holds a phase back is kept up to date as phases start and finish (the environments not yet
    migrated, the readers not yet cut over), so `ready` costs about the pairs it returns, not the square of
    the estate: 5,000 environments are scheduled in a second or two.
    """

    def __init__(self, environments: Iterable[str], phases: Iterable[int],
                 reads: Callable[[str], frozenset[str] | None], caps: dict[int, int] | None = None) -> None:
        self.environments = list(environments)
        self.phases = sorted(set(phases))
        self.caps = dict(caps or {})
        self._reads_of = reads
        self._reads: dict[str, frozenset[str]] = {}
        self._index = {environment: i for i, environment in enumerate(self.environments)}
        self._started: set[tuple[str, int]] = set()
        self._finished: set[tuple[str, int]] = set()
        self._running: Counter[int] = Counter()
        # Per phase, the environments (by mapping index, sorted) whose earlier phase is over and that have not
        # started it; a cut-over's are split by whether whom they read is known.
        self._waiting: dict[int, list[int]] = {phase: [] for phase in self.phases}
        self._waiting_unknown: list[int] = []  # cut-over candidates whose reads are unknown
        self._not_migrated = set(self.environments) if MIGRATE in self.phases else set()
        self._not_cut_over = set(self.environments) if CUT_OVER in self.phases else set()
        self._unknown_readers: set[str] = set()  # not cut over, and whom they read not known (yet)
        self._readers: Counter[str] = Counter()  # per environment, how many not cut over read its state
        for environment in self._not_cut_over:
            if MIGRATE in self.phases:
                self._unknown_readers.add(environment)  # known once it has migrated
            else:
                self._learn_reads(environment)
        if self.phases:
            for i, environment in enumerate(self.environments):
                self._enter(environment, self.phases[0])

    def reads(self, environment: str) -> frozenset[str] | None:
        if environment not in self._reads:
            known = self._reads_of(environment)
            if known is None:
                return None
            self._reads[environment] = frozenset(known)
        return self._reads[environment]

    def _learn_reads(self, environment: str) -> None:
        """`environment` has migrated (or does not migrate in this batch): whom it reads counts from now on."""
        reads = self.reads(environment)
        if reads is None:
            self._unknown_readers.add(environment)
            return
        self._unknown_readers.discard(environment)
        for source in reads:
            if source != environment:
                self._readers[source] += 1

    def _enter(self, environment: str, phase: int) -> None:
        """`environment` may be considered for `phase` from now on (its earlier phase is over)."""
        target = self._waiting[phase]
        if phase == CUT_OVER and self.reads(environment) is None:
            target = self._waiting_unknown
        bisect.insort(target, self._index[environment])

    def start(self, environment: str, phase: int) -> None:
        if (environment, phase) in self._started:
            return
        self._started.add((environment, phase))
        self._running[phase] += 1
        for waiting in (self._waiting.get(phase, []), self._waiting_unknown if phase == CUT_OVER else []):
            i = bisect.bisect_left(waiting, self._index[environment])
            if i < len(waiting) and waiting[i] == self._index[environment]:
                del waiting[i]

    def finish(self, environment: str, phase: int) -> None:
        if (environment, phase) in self._finished:
            return
        self._finished.add((environment, phase))
        if (environment, phase) in self._started:
            self._running[phase] -= 1
        if phase == MIGRATE:
            self._not_migrated.discard(environment)
            if environment in self._not_cut_over:
                self._unknown_readers.discard(environment)
                self._learn_reads(environment)
        if phase == CUT_OVER:
            self._not_cut_over.discard(environment)
            if environment in self._unknown_readers:
                self._unknown_readers.discard(environment)
            else:
                for source in self._reads.get(environment, frozenset()):
                    if source != environment:
                        self._readers[source] -= 1
        later = [p for p in self.phases if p > phase]
        if later:
            self._enter(environment, later[0])

    def done(self) -> bool:
        return len(self._finished) == len(self.environments) * len(self.phases)

    def running(self) -> int:
        return sum(self._running.values())

    def _over(self, environment: str, phase: int) -> bool:
        """Whether `environment` has finished `phase` (a phase the batch does not run is over)."""
        return phase not in self.phases or (environment, phase) in self._finished

    def _candidates(self, phase: int) -> Iterator[str]:
        """The environments that may start `phase` now, in mapping order (see the module's two rules)."""
        if phase == CUT_OVER:
            # Whom an environment reads unknown: it may read anyone, so it waits for every migration.
            indexes = (heapq.merge(self._waiting[phase], self._waiting_unknown) if not self._not_migrated
                       else iter(self._waiting[phase]))
            for i in indexes:
                environment = self.environments[i]
                reads = self.reads(environment)
                if reads is None or not any(s in self._not_migrated for s in reads if s != environment):
                    yield environment
        elif phase == DELETE:
            if len(self._unknown_readers) > 1:
                return  # someone not yet cut over may read any state: nobody is deleted yet
            for i in self._waiting[phase]:
                environment = self.environments[i]
                if not (self._unknown_readers - {environment}) and not self._readers.get(environment):
                    yield environment
        else:
            yield from (self.environments[i] for i in self._waiting[phase])

    def ready(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Up to `limit` (environment, phase) pairs that may start now, within each phase's cap, in mapping
        order within a phase. Cut-overs first: each mostly waits for the host's run, and the host's run slots
        are what bound a batch, so a free slot goes to a cut-over before anything else. Then deletions, then
        migrations (an environment is finished before another starts). Putting deletions after cut-overs
        matters at scale: until every environment has migrated, nobody knows who reads whose state, so deletions
        become ready together when the last migration ends (60 of 100 at once in a measured estate);
        taking slots ahead of cut-overs, they left half of the host's run slots idle for 30 s."""
        found: list[tuple[str, int]] = []
        for phase in sorted(self.phases, key=lambda p: (p != CUT_OVER, -p)):
            room = self.caps.get(phase, len(self.environments)) - self._running[phase]
            if room <= 0 or (limit is not None and len(found) >= limit):
                continue
            for environment in self._candidates(phase):
                found.append((environment, phase))
                room -= 1
                if room <= 0 or (limit is not None and len(found) >= limit):
                    break
        return found
