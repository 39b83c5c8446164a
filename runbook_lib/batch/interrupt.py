"""Ctrl-C during a batch: the batch handles it, nobody else sees it, and it says at once what it does.

- The first Ctrl-C stops the batch from starting any further step and prints at once which running steps it
  waits for (``stopping after: acme-legacy/app-prod 05, ...``). Those steps go on to their end: their
  kernels run in sessions of their own, and the HTML copies' process starts with SIGINT blocked, so no other
  process of the batch sees the signal (no traceback from a worker).
- The second Ctrl-C abandons the running steps: it says which, their kernels are stopped (`kernels.
  kill_kernels`), and each is recorded as failed ("abandoned"), to run anew when the same command runs again.
- Either way the batch records what happened, writes its evidence, and only then releases the environment
  locks: nothing is released while a step still runs. Further Ctrl-Cs are answered with a line.

The handler only sets flags and prints; the batch's loop acts on them (`Interruption.poll`), so the signal
never lands in the middle of the batch's own bookkeeping.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from runbook_lib import kernels

#: At most this many running steps are named in one line; the rest are counted.
SHOWN = 12
ABANDONED = ("abandoned by a second Ctrl-C: the step was stopped mid-way (its kernel killed); run the same "
             "command again to run it anew")


class BatchInterrupted(KeyboardInterrupt):
    """Raised by `BatchRunner.run` once an interrupted batch has stopped and recorded its evidence; `result`
    holds what happened (the steps that ran, those never started)."""

    def __init__(self, result: Any) -> None:
        super().__init__("the batch was interrupted")
        self.result = result


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Interruption:
    """The batch's answer to Ctrl-C (see the module).

    Args:
        running: the steps running now, as (environment, step, started monotonic seconds).
        notice: where the lines go (the CLI's progress display; stderr by default).
    """

    def __init__(self, running: Callable[[], list[tuple[str, str, float]]],
                 notice: Callable[[str], None] | None = None) -> None:
        self.running = running
        self.notice = notice or _stderr
        self.stopping = threading.Event()   # no further step starts
        self.abandoned = threading.Event()  # running steps are stopped
        self._killed = False
        self.interrupted_at: float | None = None

    @contextmanager
    def installed(self) -> Iterator["Interruption"]:
        """Handle SIGINT this way while the batch runs (only possible in the main thread; elsewhere Ctrl-C keeps
        Python's KeyboardInterrupt, which the batch treats as a first Ctrl-C). A process started with SIGINT
        ignored keeps ignoring it."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):  # started with Ctrl-C ignored (nohup, &)
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.stopping.is_set():
            self.stop()
        elif not self.abandoned.is_set():
            self.abandon()
        else:
            self.notice("tfe-runbook: still stopping: waiting for the running steps to end before the environment "
                        "locks are released")

    def _named(self) -> str:
        now = time.monotonic()
        steps = sorted(self.running())
        named = [f"{env} {step[:2]} ({now - since:.0f} s)" for env, step, since in steps[:SHOWN]]
        more = f" and {len(steps) - SHOWN} more" if len(steps) > SHOWN else ""
        return ", ".join(named) + more

    def stop(self) -> None:
        """The first Ctrl-C (or any stop): no further step starts; say what the batch waits for."""
        self.interrupted_at = time.monotonic()
        self.stopping.set()
        named = self._named()
        if named:
            self.notice(f"tfe-runbook: stopping after: {named}; no further step starts (Ctrl-C again to abandon "
                        f"the running steps)")
        else:
            self.notice("tfe-runbook: stopping: no further step starts")

    def abandon(self) -> None:
        """The second Ctrl-C: say which running steps are abandoned; `poll` stops their kernels."""
        self.stopping.set()
        named = self._named()
        self.abandoned.set()
        what = (f"abandoning {named}: their kernels are stopped and each is recorded as failed, to run anew when "
                f"you run the same command again" if named else "abandoning: no step is running")
        self.notice(f"tfe-runbook: {what}; waiting for the running steps to end before the environment locks are "
                    f"released")

    def poll(self) -> None:
        """In the batch's loop: act on an abandon (stop the kernels, once)."""
        if self.abandoned.is_set() and not self._killed:
            self._killed = True
            # nbclient logs each dead kernel as an error; the abandon line has said why already.
            logging.getLogger("papermill").setLevel(logging.CRITICAL)
            kernels.kill_kernels()
