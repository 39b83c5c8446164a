"""Warm kernels: each batch worker keeps one IPython kernel and runs notebook after notebook in it.

A fresh kernel per notebook costs about two seconds (start the kernel, import pandas and the step
modules) on every step of every environment. A warm kernel pays that once per worker. Papermill stays
the executor of record: `WarmEngine` is a papermill engine (registered as `WARM_ENGINE`) whose client
is papermill's own `PapermillNotebookClient`, given the kept kernel's manager instead of starting a
kernel, so every step still leaves its own executed notebook with papermill's metadata.

Isolation between notebooks (each guaranteed before a notebook starts, by `WarmKernel.prepare`):

- the user namespace is cleared (`InteractiveShell.reset(new_session=True)`: names, `Out`, `_`) and the
  execution count starts at 1;
- the working directory, the environment variables, `sys.path` and the warnings filters are put back to
  what they were when the kernel started, i.e. what the batch gave it;
- `runbook_lib` keeps no per-environment state outside a step's `StepContext`: its clients and their
  read memos (`runbook_lib.http.ReadMemo`) belong to the context, which the namespace reset drops. The
  only process-wide state kept on purpose is the rate-limit bucket per host (`http.shared_bucket`): the
  host's limit is per token, not per notebook.

Progress: a line a step keeps updated in place while it waits (a display with a ``display_id``, as
`display.LiveStatus` shows a run's status) reaches the batch as it is sent: both engines' clients hand its
text to the `progress` callback they are given (`ProgressRelay`), so the CLI can show a run's status changes
during a long wait.

Abandoning: every kernel the batch starts is known (`live_kernel_groups`), so a second Ctrl-C can stop the
running steps at once (`kill_kernels`: their process groups, terraform and git included).

Faults: a kernel that died, or does not answer the reset within `RESET_TIMEOUT` seconds, is a
`KernelFaultError`; a kernel that dies inside a cell is nbclient's `DeadKernelError`; a cell that
outlives the step's timeout is nbclient's `CellTimeoutError`. After any of these the batch throws the
kernel away (the next step gets a new one), so a hung cell never reaches into another step; the two
kernel faults are transient (`KERNEL_FAULTS`), the step is run again under the batch's retry rules.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import threading
import warnings
import weakref
from typing import Any, Callable

#: The papermill engine names of a warm kernel's execution and of a fresh kernel's (papermill's own, relaying progress).
WARM_ENGINE = "tfe-runbook-warm"
FRESH_ENGINE = "tfe-runbook-fresh"
#: Error types (`_error_type` names) that mean the kernel failed, not the step: the step is retried.
KERNEL_FAULTS = ("DeadKernelError", "KernelFaultError")
#: Seconds a kept kernel may take to answer the reset before a notebook; longer means it hangs.
RESET_TIMEOUT = 30.0
#: Seconds to start a kernel and do the imports every step notebook makes.
STARTUP_TIMEOUT = 120.0
#: Papermill writes the executed notebook when it starts, before and after every cell, and when it ends;
#: each write validates and serializes the whole notebook, about half the batch process's CPU for steps
#: of quick cells. The warm engine writes it when it starts and ends (the record of every step, failed or
#: not) and in between at most every this many seconds, at a cell's start or end or when a cell prints: a
#: long cell (a run being awaited, printing its progress) shows in the file within about that time.
SAVE_EVERY = 5.0
#: The modules the step notebooks import in their first cell; imported once per kernel.
WARM_IMPORTS = ("pandas", "runbook_lib.context", "runbook_lib.gates", "runbook_lib.steps.preflight",
                "runbook_lib.steps.organization", "runbook_lib.steps.workspaces",
                "runbook_lib.steps.state_migration", "runbook_lib.steps.legacy_vcs",
                "runbook_lib.steps.commit_verify", "runbook_lib.steps.decommission")
# ipykernel logs the interrupt jupyter_client sends on shutdown as an ERROR line; cell errors reach the
# notebook anyway. No history database: a reset per notebook would otherwise start a session row each.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL", "--HistoryManager.hist_file=:memory:"]


class KernelFaultError(RuntimeError):
    """The kept kernel died or stopped answering outside a notebook's cells; a new kernel is needed."""


# --- run inside the kernel -------------------------------------------------------------------------------
_baseline: dict[str, Any] = {}


def _kernel_start(imports: tuple[str, ...] = WARM_IMPORTS) -> None:
    """In the kernel: remember what the batch gave it (cwd, environment, sys.path, warnings), import the steps."""
    import importlib

    _baseline.update(cwd=os.getcwd(), environ=dict(os.environ), path=list(sys.path),
                     filters=list(warnings.filters))
    for name in imports:
        importlib.import_module(name)


def _kernel_reset() -> None:
    """In the kernel, before each notebook: an empty namespace, count 1, the batch's cwd and environment."""
    from IPython import get_ipython

    shell = get_ipython()
    # IPython's reset runs a full gc.collect (a third of a second with pandas loaded); the notebook's
    # objects go by reference counting, and cycles are left to the collector's own schedule.
    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        shell.reset(new_session=True)
    finally:
        gc.collect = collect
    shell.execution_count = 1
    os.chdir(_baseline["cwd"])
    if dict(os.environ) != _baseline["environ"]:
        os.environ.clear()
        os.environ.update(_baseline["environ"])
    sys.path[:] = _baseline["path"]
    warnings.filters[:] = _baseline["filters"]
    warnings._filters_mutated()  # type: ignore[attr-defined]  # drop the per-module "already warned" caches


# Both run as silent executions: they bind no name in the user namespace and count no execution.
_START_CODE = "__import__('runbook_lib.kernels', fromlist=['_'])._kernel_start()"
_RESET_CODE = "__import__('runbook_lib.kernels', fromlist=['_'])._kernel_reset()"


# --- run in the batch ------------------------------------------------------------------------------------
_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()  # the managers of the kernels this process started
_LIVE_LOCK = threading.RLock()  # re-entrant: `kill_kernels` may run while this thread is inside a start


def live_kernel_groups() -> list[int]:
    """The process groups of the kernels this process started and has not shut down (each kernel leads its own
    session, so the group holds the kernel and what it started: terraform, git)."""
    with _LIVE_LOCK:
        managers = list(_LIVE)
    groups = []
    for km in managers:
        provisioner = getattr(km, "provisioner", None)
        group = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
        if group and km.has_kernel:
            groups.append(int(group))
    return groups


def kill_kernels() -> int:
    """Stop every kernel this process started, at once (SIGKILL to its process group); returns how many. The
    notebooks running in them end with a dead kernel, which their batch records."""
    import signal

    killed = 0
    for group in live_kernel_groups():
        try:
            os.killpg(group, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            continue  # ended meanwhile
    return killed


def private_kernel_manager_class(socket_dir: str, *, asynchronous: bool,
                                 extra_env: dict[str, str] | None = None) -> type:
    """A kernel manager whose kernel talks over unix sockets in `socket_dir` (mode 0700) instead of TCP.

    Over TCP, another local user could connect to or listen on a kernel's loopback ports (ipykernel
    warns about it); the batch's kernels see tokens in their environment and state in their outputs.
    `extra_env` is added to the environment the kernel inherits (the batch's shared rate budget folder).
    """
    from jupyter_client.manager import AsyncKernelManager, KernelManager

    base = AsyncKernelManager if asynchronous else KernelManager

    class PrivateKernelManager(base):  # type: ignore[valid-type, misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = os.path.join(socket_dir, "kernel")

        async def _async_pre_start_kernel(self, **kw: Any) -> Any:
            if extra_env:
                kw["env"] = {**(kw.get("env") or os.environ), **extra_env}
            return await super()._async_pre_start_kernel(**kw)

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            with _LIVE_LOCK:
                _LIVE.add(self)
            await super()._async_post_start_kernel(**kw)

    return PrivateKernelManager


class WarmKernel:
    """One kept kernel: started with the steps' imports, reset before each notebook, shut down at the end.

    Used by one batch worker at a time (`KernelPool` hands it out); its blocking client and the kernel
    manager are not bound to a thread's event loop, so any worker thread may use it.
    """

    def __init__(self, kernel_name: str = "python3", extra_env: dict[str, str] | None = None) -> None:
        self.kernel_name = kernel_name
        self.extra_env = dict(extra_env or {})
        self.km: Any = None
        self.client: Any = None  # the notebooks' asynchronous client, kept between notebooks
        self.client_thread = 0  # the worker thread whose event loop the client's sockets belong to
        self._socket_dir = ""
        self.notebooks = 0  # notebooks prepared in this kernel

    def start(self) -> None:
        """Start the kernel and do the imports.

        Raises:
            KernelFaultError: the kernel did not start or the imports failed (the message says which).
        """
        # A short path: unix socket paths allow about 100 characters.
        self._socket_dir = tempfile.mkdtemp(prefix="tfe-runbook-kernel-")
        try:
            manager = private_kernel_manager_class(self._socket_dir, asynchronous=False, extra_env=self.extra_env)
            self.km = manager(kernel_name=self.kernel_name)
            self.km.start_kernel(extra_arguments=list(KERNEL_ARGUMENTS))
            # A client for the start only: each notebook gets its own (papermill's), and a client kept
            # across another client's session stops hearing its replies.
            client = self.km.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=STARTUP_TIMEOUT)
                reply = _reply_while_alive(client, self.km, _START_CODE, STARTUP_TIMEOUT)
            finally:
                client.stop_channels()
            _check_reply(reply, "start")
        except KernelFaultError:
            self.shutdown()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to start means this kernel is unusable
            self.shutdown()
            raise KernelFaultError(f"a warm kernel did not start: {type(exc).__name__}: {exc}") from exc

    def alive(self) -> bool:
        return self.km is not None and bool(self.km.is_alive())

    def drop_client(self) -> None:
        """Close the kept notebook client (another thread takes the kernel over, or a notebook failed)."""
        client, self.client, self.client_thread = self.client, None, 0
        if client is not None:
            try:
                client.stop_channels()
            except Exception:  # noqa: BLE001, S110 - closing sockets of a client no one will use again
                pass

    def shutdown(self) -> None:
        """Stop the kernel at once (no grace: nothing in it is worth waiting for) and remove its sockets."""
        self.drop_client()
        try:
            if self.km is not None and self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001, S110 - a kernel already gone is what shutting down wants
            pass
        finally:
            self.km = None
            if self._socket_dir:
                shutil.rmtree(self._socket_dir, ignore_errors=True)


def _reply_while_alive(client: Any, km: Any, code: str, timeout: float) -> Any:
    """Run `code` silently and return its reply; a kernel that dies meanwhile (stopped by a second Ctrl-C) is
    noticed within a second, not after `timeout`.

    Raises:
        KernelFaultError: the kernel died, or did not answer within `timeout` seconds.
    """
    import queue
    import time

    msg_id = client.execute(code, silent=True, store_history=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = client.get_shell_msg(timeout=1.0)
        except queue.Empty:
            if not km.is_alive():
                raise KernelFaultError("the warm kernel died while it started") from None
            if time.monotonic() >= deadline:
                raise KernelFaultError(f"the warm kernel did not finish its start within {timeout:g} s") from None
            continue
        if (msg.get("parent_header") or {}).get("msg_id") == msg_id:
            return msg


def _check_reply(reply: Any, what: str) -> None:
    content = (reply or {}).get("content", {})
    if content.get("status") != "ok":
        raise KernelFaultError(f"the warm kernel's {what} failed: {content.get('ename')}: {content.get('evalue')}")


class KernelPool:
    """The batch's warm kernels: a worker takes one for a notebook and gives it back (or throws it away).

    At most `starts_at_once` kernels start at the same time (default: one per core). A start is CPU work
    (about 1.5 CPU-seconds: the kernel and its imports); 24 workers starting theirs together on two cores
    all got their first kernel after ~18 s, where one after the other the first steps begin within seconds
    and the others follow while they run. A worker waiting for its turn takes a kernel given back meanwhile.
    """

    def __init__(self, kernel_name: str = "python3", extra_env: dict[str, str] | None = None, *,
                 starts_at_once: int | None = None) -> None:
        self.kernel_name = kernel_name
        self.extra_env = dict(extra_env or {})
        self._idle: list[WarmKernel] = []
        self._all: list[WarmKernel] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a kernel was given back, or a start ended
        self._starts_left = max(1, starts_at_once or os.cpu_count() or 1)
        self.started = 0  # kernels started, replacements included
        self.discarded = 0

    def take(self) -> WarmKernel:
        """An idle kernel, or a new one (started here, in the calling worker, when a start slot is free).

        Raises:
            KernelFaultError: a new kernel did not start.
        """
        with self._changed:
            while not self._idle and self._starts_left == 0:
                self._changed.wait()
            if self._idle:
                # The kernel this worker used last, if idle: its client can be taken up again.
                mine = [k for k in self._idle if k.client_thread == threading.get_ident()]
                kernel = mine[0] if mine else self._idle[-1]
                self._idle.remove(kernel)
                return kernel
            self._starts_left -= 1
            self.started += 1
        try:
            kernel = WarmKernel(self.kernel_name, self.extra_env)
            kernel.start()
            with self._lock:
                self._all.append(kernel)
            return kernel
        finally:
            with self._changed:
                self._starts_left += 1
                self._changed.notify()

    def give_back(self, kernel: WarmKernel, *, healthy: bool) -> None:
        """Return a kernel after a notebook; one that failed (died, hung, timed out) is shut down instead."""
        if healthy and kernel.alive():
            with self._changed:
                self._idle.append(kernel)
                self._changed.notify()
            return
        kernel.shutdown()
        with self._lock:
            self.discarded += 1
            if kernel in self._all:
                self._all.remove(kernel)

    def close(self) -> None:
        with self._lock:
            kernels, self._all, self._idle = self._all, [], []
        for kernel in kernels:
            kernel.shutdown()


_registered = False


def register_engine() -> None:
    """Register the warm and fresh engines with papermill (once; the kernel side of this module never needs papermill)."""
    global _registered
    with _REGISTER_LOCK:
        if not _registered:
            _define_engine()
            _registered = True


_REGISTER_LOCK = threading.Lock()


def _define_engine() -> None:
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_core.utils import run_sync
    from nbclient.exceptions import DeadKernelError
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import Engine, NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    class ProgressRelay(PapermillNotebookClient):
        """papermill's client that hands each live progress line (a display updated in place) to `relay`."""

        relay: Callable[[str], None] | None = None

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            content = msg.get("content") or {}
            if (self.relay is not None and msg.get("msg_type") in ("display_data", "update_display_data")
                    and (content.get("transient") or {}).get("display_id")):
                text = (content.get("data") or {}).get("text/plain")
                if text:
                    self.relay(str(text))
            return super().process_message(msg, cell, cell_index)

    class FreshEngine(NBClientEngine):
        """papermill's own engine (a kernel per notebook), with the progress relay."""

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: int | None = None, progress: Any = None,
                                     **kwargs: Any) -> Any:
            kwargs = remove_args(["input_path"], **kwargs)
            final = merge_kwargs(remove_args(["timeout", "startup_timeout"], **kwargs),
                                 timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                                 startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logging_logger(), log_output=log_output,
                                 stdout_file=stdout_file, stderr_file=stderr_file)
            client = ProgressRelay(nb_man, **final)
            client.relay = progress
            return client.execute()

    class SparseSavingManager(NotebookExecutionManager):
        """papermill's execution manager, writing the notebook at its start and end and in between at most
        every `SAVE_EVERY` seconds (see there); what it writes is what papermill would."""

        final = False

        def save(self, **kwargs: Any) -> None:
            if self.final or "nb" in kwargs or (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY:
                super().save(**kwargs)

        def notebook_start(self, **kwargs: Any) -> None:
            self.final = True  # the first write: the file shows the step has started
            try:
                super().notebook_start(**kwargs)
            finally:
                self.final = False

        def notebook_complete(self, **kwargs: Any) -> None:
            self.final = True
            super().notebook_complete(**kwargs)

    class WarmNotebookClient(ProgressRelay):
        """papermill's client, run in a kept kernel: prepare it, run the cells, close only the client."""

        def __init__(self, nb_man: Any, warm_kernel: WarmKernel, **kw: Any) -> None:
            super().__init__(nb_man, km=warm_kernel.km, **kw)
            self.warm_kernel = warm_kernel

        async def async_start_new_kernel_client(self) -> Any:
            # The kernel's client is kept for the next notebook run from the same worker thread (its
            # sockets belong to that thread's event loop); it ignores answers to earlier notebooks, as
            # nbclient matches every reply and output to the request it sent.
            warm = self.warm_kernel
            if warm.client is not None and warm.client_thread == threading.get_ident():
                self.kc = warm.client
                return self.kc
            warm.drop_client()
            # nbclient needs an asynchronous client; the kept manager is a blocking one (usable from any
            # worker thread), so the client is made here from its connection info, as `km.client()` would.
            km = self.km
            self.kc = AsyncKernelClient(**{**km.get_connection_info(session=True),
                                           "connection_file": km.connection_file, "parent": km})
            self.kc.start_channels()
            await self.kc.wait_for_ready(timeout=self.startup_timeout)
            self.kc.allow_stdin = False
            warm.client, warm.client_thread = self.kc, threading.get_ident()
            return self.kc

        start_new_kernel_client = run_sync(async_start_new_kernel_client)

        def prepare_kernel(self) -> None:
            """Make the kernel as good as new for this notebook (see the module's isolation list).

            Raises:
                KernelFaultError: the kernel is dead or did not answer within `RESET_TIMEOUT`.
            """
            if not self.warm_kernel.alive():
                raise KernelFaultError("the warm kernel died between notebooks; a new one is started")
            timeout, self.timeout = self.timeout, RESET_TIMEOUT
            try:
                reply = self.wait_for_reply(self.kc.execute(_RESET_CODE, silent=True, store_history=False))
            except Exception as exc:  # noqa: BLE001 - no reply in time, DeadKernelError: the kernel is unusable
                raise KernelFaultError(f"the warm kernel did not answer its reset within {RESET_TIMEOUT:g} s"
                                       ) from exc
            finally:
                self.timeout = timeout
            _check_reply(reply, "reset")
            self.warm_kernel.notebooks += 1

        def execute(self, **kwargs: Any) -> Any:
            self.reset_execution_trackers()
            # The manager has its kernel, so this only opens (or takes up again) the client to it.
            with self.setup_kernel(cleanup_kc=False, **kwargs):
                done = False
                try:
                    self.prepare_kernel()
                    self.log.info(f"Executing notebook in a warm kernel ({self.warm_kernel.notebooks})")
                    self.papermill_execute_cells()
                    info_msg = self.wait_for_reply(self.kc.kernel_info())
                    self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                    self.set_widgets_metadata()
                    done = True
                finally:
                    self.kc = None
                    if not done:
                        self.warm_kernel.drop_client()  # after a fault, the next notebook starts a clean client
            if not self.warm_kernel.alive():
                raise DeadKernelError("the warm kernel died during the notebook")
            return self.nb

    class WarmEngine(Engine):
        """papermill engine running a notebook in the `warm_kernel` it is given (see `WarmNotebookClient`)."""

        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: Any = None, progress_bar: Any = True,
                             log_output: bool = False, autosave_cell_every: int = 30, **kwargs: Any) -> Any:
            # Engine.execute_notebook's sequence, with the sparse-saving manager; papermill's own autosave (when
            # a cell prints) at the same pace, so a long cell's output shows in the file within it.
            nb_man = SparseSavingManager(nb, output_path=output_path, progress_bar=progress_bar,
                                         log_output=log_output, autosave_cell_every=min(autosave_cell_every, SAVE_EVERY))
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: int | None = None, warm_kernel: WarmKernel | None = None,
                                     progress: Any = None, **kwargs: Any) -> Any:
            if warm_kernel is None:
                raise KernelFaultError("the warm engine needs warm_kernel=WarmKernel(...)")
            kwargs = remove_args(["input_path", "timeout", "startup_timeout", "kernel_manager_class",
                                  "extra_arguments"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logging_logger(), log_output=log_output,
                                 stdout_file=stdout_file, stderr_file=stderr_file)
            client = WarmNotebookClient(nb_man, warm_kernel, **final)
            client.relay = progress
            return client.execute()

    papermill_engines.register(WARM_ENGINE, WarmEngine)
    papermill_engines.register(FRESH_ENGINE, FreshEngine)


def logging_logger() -> Any:
    from papermill.log import logger

    return logger

