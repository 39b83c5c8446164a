"""Executing one step notebook: papermill in a warm kernel or a fresh one, its HTML copy, its earlier attempts.

The HTML copy of each executed notebook is written in the background (`HtmlCopies`: a spawned process,
so nbconvert does not share the batch process's GIL), so it does not delay the next step. An earlier
attempt of the same step is moved aside with its attempt number (`keep_earlier_attempt`), so a retry
never erases evidence.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runbook_lib import audit, kernels

# Errors a step may meet when a host is briefly unwell (after the transport's own retries); the step is
# idempotent, so running it again is safe. Refusals, conflicts and failed verifications are never retried.
# A kernel that died or stopped answering (kernels.KERNEL_FAULTS) is replaced, and the step run again the same way.
TRANSIENT_ERRORS = ("ServerError", "TransportError", "RateLimitedError", *kernels.KERNEL_FAULTS)
KERNEL_MODES = ("warm", "fresh")


def keep_earlier_attempt(target: Path) -> None:
    """Move an earlier attempt aside (`NN_step.attempt-K.ipynb`) so its evidence is kept."""
    if not target.exists():
        return
    k = 1
    while (aside := target.with_name(f"{target.stem}.attempt-{k}{target.suffix}")).exists():
        k += 1
    target.rename(aside)
    html = target.with_suffix(".html")
    if html.exists():
        html.rename(aside.with_suffix(".html"))


#: How much lower the HTML copies' process runs than the steps (`os.nice` increment).
HTML_NICENESS = 10


class HtmlCopies:
    """HTML copies of executed notebooks, written by one background worker, off the steps' critical path.

    The worker is a process of its own by default: nbconvert is pure Python, and in a thread it would
    take turns on the GIL with the papermill clients that drive the kernels. At most `max_pending` copies
    wait at a time (a submit beyond that waits for a slot), so a slow disk cannot pile up work.
    `settle(path)` waits for one notebook's copy (before an attempt is moved aside); `drain()` for all of
    them, raising the first failure.
    """

    def __init__(self, max_pending: int = 8, *, processes: bool = True) -> None:
        self._pool: Any = None
        if processes:
            try:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # spawn: a fork of a process with running threads may copy a lock held by one of them.
                # Niced: on a busy machine the steps get the CPU first and the copies take what is left
                # (while cut-overs wait for their runs); `drain` still waits for every copy.
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=os.nice, initargs=(HTML_NICENESS,))
                self._start_deaf_to_ctrl_c()
            except (OSError, ImportError):  # no process support here: a thread does the same work
                self._pool = None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="html-copies")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pending: dict[Path, Future] = {}
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []

    def _start_deaf_to_ctrl_c(self) -> None:
        """Start the worker process now, with SIGINT blocked: a Ctrl-C in the terminal reaches every process of
        its group, and the batch alone answers it (a blocked signal mask outlives the exec of the new
        interpreter; a Ctrl-C meanwhile reaches this process once it is unblocked)."""
        import signal

        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._pool.submit(os.getpid).result()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def submit(self, notebook: Path) -> None:
        self._slots.acquire()
        future = self._pool.submit(audit.notebook_to_html, notebook)
        with self._lock:
            self._pending[notebook] = future
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        exc = future.exception()
        if exc is not None:  # kept and raised by drain(): the batch still finishes its steps
            with self._lock:
                self._failures.append(exc)
        self._slots.release()

    def settle(self, notebook: Path) -> None:
        with self._lock:
            future = self._pending.pop(notebook, None)
        if future is not None:
            future.exception()  # waits; a failure is raised by drain()

    def drain(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            self._pending.clear()
            failures, self._failures = self._failures, []
        if failures:
            raise failures[0]


class Interrupted(Exception):
    """A step that waited for a warm kernel while the batch was interrupted: it is not started."""


def private_kernel_manager(socket_dir: str, extra_env: dict[str, str] | None = None) -> type:
    """A fresh kernel's manager, talking over unix sockets in `socket_dir` (see `kernels.private_kernel_manager_class`)."""
    return kernels.private_kernel_manager_class(socket_dir, asynchronous=True, extra_env=extra_env)


def error_type(exc: BaseException) -> str:
    """The exception class name: raised in the kernel (papermill reports it) or in the runner."""
    from papermill.exceptions import PapermillExecutionError

    return exc.ename if isinstance(exc, PapermillExecutionError) else type(exc).__name__


def error_text(exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return f"cell {exc.cell_index}: {exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"

