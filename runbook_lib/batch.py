"""Batch runs: the runbook's notebooks through papermill, per environment, resumable.

For each environment of the mapping, the step notebooks run in order, each only after its
predecessor passed; environments run in parallel (`jobs`), in three phases (see PHASE_ENDS): 0-3, 4-5, 6. An
environment is cut over (4-5) once every environment whose state it reads is migrated (0-3), and deleted (6)
once every environment that reads its state is cut over (`runbook_lib.schedule`). Every executed notebook lands in the audit
trail (`runs/<batch>/<org>__<env>/NN_<step>.ipynb` plus an HTML copy); an earlier attempt of the
same step is kept beside it with its attempt number, so a retry never erases evidence.

Resuming: the ledger (`runs/<batch>/ledger.sqlite`) says which steps already passed in apply mode;
running the same command again skips them and retries the rest, so nothing is done twice. A step left
"running" by a killed batch counts as not passed, and the steps themselves are idempotent (they adopt
what the earlier attempt created).

Execution (`kernels`): "warm" (the default) runs each worker's notebooks one after another in one kept
kernel (`runbook_lib.kernels`: namespace, execution count, cwd and environment reset before each notebook);
"fresh" starts a kernel per notebook. The HTML copy of each executed notebook is written in the background
(`HtmlCopies`: a spawned process, so nbconvert does not share this process's GIL), so it does not delay the
next step; `run` returns (and writes the manifest that `archive` needs) only once every copy is written.

Exclusion: a file lock per environment, in one per-user folder (`lock_root`, whatever the batch's
output folder), refuses a second batch that would work on an environment another batch holds; it is
released only once no step of the batch runs any more, even after a second Ctrl-C. The workspace lock
taken in step 2 guards the server side.

Evidence is private: the batch folder and each environment's folder are created 0700 and every file the
batch writes is readable by its owner only (the executed notebooks show state details).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from runbook_lib import audit, catalog, kernels, mapping, summary
from runbook_lib.errors import LedgerError, RunbookError
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow
from runbook_lib.schedule import CUT_OVER, MIGRATE, Schedule

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
STEPS = catalog.STEPS
GATED_ACTIONS = catalog.GATED_ACTIONS  # the action each gated step asks to confirm (see runbook_lib.gates)
# Steps run in phases (PHASE_ENDS), ordered across environments by `schedule.Schedule`: the workspaces whose
# state a configuration reads get it (0-3) before that configuration is cut over (4-5), so the cut-over can
# repoint its `terraform_remote_state` sources to them; and no legacy environment is deleted (6) before every
# environment of the batch that reads its state is cut over. Where step 0 has not said who reads what, every
# environment finishes a phase before any starts the next.
PHASE_ENDS = (3, 5, 6)  # by step number: 00-03, 04-05, 06


def lock_root(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user folder of environment locks, shared by every batch whatever its --out.

    ``$TFE_RUNBOOK_LOCK_DIR`` when set; else ``$XDG_RUNTIME_DIR/tfe-runbook/locks`` (a per-user tmpfs on
    systemd hosts); else ``~/.cache/tfe-runbook/locks``. Created mode 0700.
    """
    env = os.environ if environ is None else environ
    if env.get("TFE_RUNBOOK_LOCK_DIR"):
        root = Path(env["TFE_RUNBOOK_LOCK_DIR"])
    elif env.get("XDG_RUNTIME_DIR") and Path(env["XDG_RUNTIME_DIR"]).is_dir():
        root = Path(env["XDG_RUNTIME_DIR"]) / "tfe-runbook" / "locks"
    else:
        root = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfe-runbook" / "locks"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def lock_path(environment: str, environ: Mapping[str, str] | None = None) -> Path:
    """The lock file of one legacy environment, keyed by the legacy host (``$ATLAS_ADDRESS``) and
    ``<org>/<env>``: two batches on one environment meet here whatever their output folders."""
    import hashlib

    env = os.environ if environ is None else environ
    host = (env.get("ATLAS_ADDRESS") or "").strip().rstrip("/").lower()
    digest = hashlib.sha256(f"{host}|{environment}".encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", audit.env_dirname(environment))[:80]
    return lock_root(env) / f"{readable}-{digest}.lock"


def _stop_workers(pool: ThreadPoolExecutor, futures: Sequence[Any]) -> None:
    """Cancel steps not yet started and wait until the running ones have stopped.

    A Ctrl-C does not reach the kernels (jupyter_client starts each in a session of its own), so steps
    already running go on to their end; further Ctrl-Cs while waiting are answered with a line, not
    obeyed: the environment locks must outlive the work.
    """
    import sys
    from concurrent.futures import wait

    for future in futures:
        future.cancel()
    while True:
        try:
            wait(futures)
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            print("tfe-runbook: still stopping: waiting for the running steps to end before the environment locks "
                  "are released", file=sys.stderr, flush=True)


def phase_of(step: str) -> int:
    """The phase of a step notebook, from its number prefix (`03_migrate_state` -> 0)."""
    number = int(step.split("_", 1)[0]) if step[:2].isdigit() else 0
    return next((i for i, end in enumerate(PHASE_ENDS) if number <= end), len(PHASE_ENDS) - 1)
# Errors a step may meet when a host is briefly unwell (after the transport's own retries); the step is
# idempotent, so running it again is safe. Refusals, conflicts and failed verifications are never retried.
# A kernel that died or stopped answering (kernels.KERNEL_FAULTS) is replaced, and the step run again the same way.
TRANSIENT_ERRORS = ("ServerError", "TransportError", "RateLimitedError", *kernels.KERNEL_FAULTS)
KERNEL_MODES = ("warm", "fresh")
#: `--jobs auto`: environments migrating or being deleted per request/s of the host's rate limit. Those
#: phases ask most of an environment's requests; at ~3 requests/s each, the budget (90% of the limit)
#: keeps ~10 of them going at 30/s without every kernel queueing on the bucket.
AUTO_REQUESTS_PER_ENV_S = 2.7
#: `--jobs auto`: cut-overs in flight besides them. A cut-over mostly waits for its run on the host: it costs a
#: kernel and few requests (steps 4 and 5 ask ~22 in ~30 s, polls included: `AUTO_REQUESTS_PER_CUT_OVER_S`;
#: they are given at most half the request budget).
#: A TFE executes 10 runs at once by default (TFE_CAPACITY_CONCURRENCY), and a cut-over holds its slot about
#: 1.4x as long as its run holds one of the host's (step 4, the push and finding the run before it, reading
#: the plan back after it: ~8 s around a 20 s plan, measured), so 14 in flight keep the host's 10 run slots
#: busy; the few runs beyond its capacity wait in its queue. Without slots of their own, cut-overs waiting
#: for runs fill every slot and the migrations behind them wait.
AUTO_CUT_OVERS = 14
AUTO_REQUESTS_PER_CUT_OVER_S = 0.8
#: A warm kernel with pandas and the step modules: resident memory budgeted per environment in flight.
AUTO_KERNEL_MB = 250
#: Kernels per core: they wait on the network far more than they compute (waiting holds no CPU). An
#: environment costs ~2.8 CPU-seconds in ~50 s of steps (batch process, kernel, HTML copy: measured at 100
#: environments), so 12 in flight on a core keep it well under full; 24 on two cores let 10 migrate while
#: 14 cut over.
AUTO_KERNELS_PER_CORE = 12


def select_steps(spec: str, steps: Sequence[str] = STEPS) -> list[str]:
    """Steps named by a spec like "0-6", "3", "0,1,2" or "2-"; in runbook order.

    Raises:
        RunbookError: a number outside the runbook's steps or a malformed spec.
    """
    chosen: set[int] = set()
    last = len(steps) - 1
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                chosen.update(range(int(lo or 0), int(hi or last) + 1))
            else:
                chosen.add(int(part))
        except ValueError as exc:
            raise RunbookError(f"--steps {spec!r} is not a step list like 0-6 or 3,4.") from exc
    if not chosen or min(chosen) < 0 or max(chosen) > last:
        raise RunbookError(f"--steps {spec!r} must name steps between 0 and {last}.")
    return [steps[i] for i in sorted(chosen)]


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


@dataclass
class StepOutcome:
    """What happened to one step of one environment in this batch run."""

    environment: str
    step: str
    status: str  # passed, failed, waiting (for the operator's hand), skipped (already verified), blocked
    seconds: float = 0.0
    notebook: str | None = None
    error: str | None = None
    error_type: str | None = None


@dataclass
class BatchResult:
    batch_dir: Path
    outcomes: list[StepOutcome] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""

    @property
    def ok(self) -> bool:
        return all(o.status in ("passed", "skipped") for o in self.outcomes)

    def frame(self):
        import pandas as pd

        return pd.DataFrame([o.__dict__ for o in self.outcomes],
                            columns=["environment", "step", "status", "seconds", "notebook", "error"])

    def matrix(self) -> dict[str, dict[str, str]]:
        table: dict[str, dict[str, str]] = {}
        for o in self.outcomes:
            table.setdefault(o.environment, {})[o.step] = o.status
        return table


def _attempt_path(target: Path) -> None:
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
            except (OSError, ImportError):  # no process support here: a thread does the same work
                self._pool = None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="html-copies")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pending: dict[Path, Future] = {}
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []

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


class _Interrupted(Exception):
    """A step that waited for a warm kernel while the batch was interrupted: it is not started."""


def _private_kernel_manager(socket_dir: str, extra_env: dict[str, str] | None = None) -> type:
    """A fresh kernel's manager, talking over unix sockets in `socket_dir` (see `kernels.private_kernel_manager_class`)."""
    return kernels.private_kernel_manager_class(socket_dir, asynchronous=True, extra_env=extra_env)


def _error_type(exc: BaseException) -> str:
    """The exception class name: raised in the kernel (papermill reports it) or in the runner."""
    from papermill.exceptions import PapermillExecutionError

    return exc.ename if isinstance(exc, PapermillExecutionError) else type(exc).__name__


def _error_text(exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return f"cell {exc.cell_index}: {exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class JobsChoice:
    """What `--jobs auto` chose, and each bound it weighed (for the operator's progress line and the manifest)."""

    jobs: int
    environments: int
    rate_limit: float
    rate_source: str  # "host" (X-RateLimit-Limit) or "default" (unreachable or silent host)
    by_rate: int
    by_memory: int
    by_cpu: int
    cut_overs: int = 0  # of `jobs`, at most this many cutting over (0: no cap of their own)
    migrating: int = 0  # of `jobs`, at most this many migrating (0: no cap of their own)

    def caps(self) -> dict[int, int]:
        """The schedule's per-phase caps (a phase with 0 has no cap of its own)."""
        return {phase: cap for phase, cap in ((MIGRATE, self.migrating), (CUT_OVER, self.cut_overs)) if cap > 0}

    def describe(self) -> str:
        return (f"--jobs auto: {self.jobs} environments in flight (of {self.environments}), at most "
                f"{self.migrating} of them migrating and {self.cut_overs} cutting over (waiting for runs); rate "
                f"limit {self.rate_limit:g}/s from "
                f"the {self.rate_source} allows {self.by_rate} migrating, memory {self.by_memory}, CPU {self.by_cpu}")


def choose_jobs(environments: int, rate_limit: float | None, *, cores: int | None = None,
                available_mb: float | None = None) -> JobsChoice:
    """The batch's concurrency for `--jobs auto`: as many environments in flight as the host and machine allow.

    Args:
        environments: environments in the batch (never more jobs than that).
        rate_limit: the host's `X-RateLimit-Limit` (None: TFE's documented 30/s).
        cores, available_mb: the machine (default: this one's CPUs and MemAvailable).
    """
    from runbook_lib.http import DEFAULT_RATE_LIMIT, RATE_LIMIT_FRACTION

    rate = rate_limit or DEFAULT_RATE_LIMIT
    cores = cores or os.cpu_count() or 1
    available_mb = available_mb if available_mb is not None else _available_mb()
    by_rate = max(1, int(rate * RATE_LIMIT_FRACTION / AUTO_REQUESTS_PER_ENV_S))
    by_memory = max(1, int(available_mb / 2 / AUTO_KERNEL_MB))  # half the free memory for the kernels
    by_cpu = max(1, cores * AUTO_KERNELS_PER_CORE)
    # Their steps ask requests too, from the budget the migrations use: all of them together at most half of
    # it (the shared bucket makes the steps wait, never 429, when migrations and cut-overs ask at once).
    cut_overs = max(1, min(AUTO_CUT_OVERS, int(rate * RATE_LIMIT_FRACTION / 2 / AUTO_REQUESTS_PER_CUT_OVER_S)))
    jobs = max(1, min(environments, by_rate + cut_overs, by_memory, by_cpu))
    return JobsChoice(jobs, environments, rate, "host" if rate_limit else "default", by_rate, by_memory, by_cpu,
                      cut_overs=min(jobs, cut_overs), migrating=min(jobs, by_rate))


def _available_mb() -> float:
    """MemAvailable from /proc/meminfo in MB (4 GB assumed where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4096.0


def host_rate_limit(parameters: Mapping[str, Any]) -> float | None:
    """The TFE host's `X-RateLimit-Limit`, from one ping with the batch's settings; None if it cannot say."""
    from runbook_lib.settings import Settings
    from runbook_lib.tfe import TfeClient

    try:
        settings = Settings.from_env(tfe_token_var=parameters.get("tfe_token_var") or "",
                                     tfe_address=parameters.get("tfe_address") or "",
                                     ca_bundle=parameters.get("ca_bundle") or "")
        client = TfeClient(settings, read_only=True)
        try:
            return client.ping().get("rate_limit")
        finally:
            client.session.close()
    except RunbookError:
        return None  # the steps themselves report an unreachable host with the fix; here the default serves


def declared_parameters(notebook: str | Path) -> set[str]:
    """The names a notebook's `parameters` cell declares (as papermill reads them)."""
    return set(declared_parameter_types(notebook))


def declared_parameter_types(notebook: str | Path) -> dict[str, type | None]:
    """Each parameter a notebook declares, with its type: papermill's ``inferred_type_name`` (from an
    annotation) when it gives one, else the type of the literal default (``False`` -> bool, ``900`` -> int);
    None when neither says (the value is then passed as the string given)."""
    import ast
    import logging

    import papermill

    # papermill logs a warning per line it cannot parse; the shape test keeps every line parseable.
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    types: dict[str, type | None] = {}
    for name, info in papermill.inspect_notebook(str(notebook)).items():
        named = _TYPE_NAMES.get(str(info.get("inferred_type_name") or "").strip())
        if named is None:
            try:
                default = ast.literal_eval(str(info.get("default")))
            except (ValueError, SyntaxError):
                default = None
            named = type(default) if isinstance(default, (bool, int, float, str)) else None
        types[name] = named
    return types


_TYPE_NAMES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
#: Parameters the batch sets itself for every notebook, and what sets them instead of --param.
BATCH_SET_PARAMETERS = {
    "legacy_org": "the mapping file (--mapping; its legacy_org column)",
    "legacy_env": "the mapping file (--mapping; choose environments with --env)",
    "new_org": "the mapping file (--mapping; its new_org column)",
    "workspace": "the mapping file (--mapping; its workspace column)",
    "mode": "--mode plan or --mode apply",
    "audit_root": "--out and --batch (the batch writes under <out>/<batch>)",
    "ledger_path": "--out and --batch (the ledger is <out>/<batch>/ledger.sqlite)",
    "batch_id": "--batch",
    "confirm": "--confirm-file",
    "interactive": "nothing: a batch never waits for a button; confirmations come from --confirm-file",
}
_BATCH_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def names_a_variable(parameter: str) -> bool:
    """Whether a parameter carries the NAME of an environment variable (``*_var``, ``sensitive_var_prefix``)."""
    return parameter.endswith("_var") or parameter == "sensitive_var_prefix"


def check_batch_name(name: str) -> str:
    """A batch name, refused when it could be read as a path.

    Raises:
        RunbookError: separators, ``.``/``..``, a leading dot or dash, or other characters.
    """
    if not _BATCH_NAME.match(name or "") or name in (".", "..") or ".." in name:
        raise RunbookError("--batch must be a name (letters, digits, '.', '-', '_'; no '/', no '..', not starting "
                           "with '.' or '-'); the batch is written to <out>/<name>: choose the folder with --out.")
    return name


def coerce_parameter(name: str, value: Any, kind: type | None) -> Any:
    """A ``--param`` value converted to the type its notebook declares.

    Strings from the command line: a bool accepts true/false, 1/0, yes/no, on/off (any case); an int or
    float what Python's int()/float() accept. Values that already have the type pass unchanged.

    Raises:
        RunbookError: the value does not fit the type; the message names the parameter and the type.
    """
    if kind is None or kind is str:
        return value if kind is None or isinstance(value, str) else str(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    else:
        try:
            return kind(text)
        except ValueError:
            pass
    spelled = {bool: "True or False (true/false, 1/0, yes/no)", int: "a whole number", float: "a number"}[kind]
    raise RunbookError(f"--param {name} must be {spelled}, as its notebook declares; {text!r} is not.")


class BatchRunner:
    """Runs steps for environments into `out/<batch_id>`.

    Args:
        rows: the environments (mapping rows) to migrate.
        steps: step notebook names, in order (see `select_steps`).
        mode: "plan" or "apply".
        out: the runs folder; the batch writes to `out/<batch_id>`.
        batch_id: the batch's name; the same name resumes the same batch.
        jobs: environments run in parallel, or "auto": as many as the host's rate limit and this machine
            allow (`choose_jobs`; the choice is in `jobs_choice` and the manifest).
        parameters: extra notebook parameters for every step (token variable NAMES, migration path, ...).
        confirm_lines: confirmations from the confirm file.
        notebooks_dir: where the step notebooks are.
        execution_timeout: seconds a single cell may run.
        on_step: called with each StepOutcome as it finishes (progress display), and with a
            "retrying" outcome before a transient failure is run again.
        transient_retries: how often a step that failed on a transient API error or a kernel fault
            (TRANSIENT_ERRORS) is run again at once; its earlier attempt's notebook is kept.
        kernels: "warm" (one kept kernel per worker, see `runbook_lib.kernels`) or "fresh" (a kernel
            per notebook).
    """

    def __init__(self, rows: Sequence[MappingRow], steps: Sequence[str], *, mode: str, out: str | Path,
                 batch_id: str, jobs: int | str = 1, parameters: Mapping[str, Any] | None = None,
                 confirm_lines: Sequence[str] = (), notebooks_dir: str | Path = NOTEBOOKS_DIR,
                 execution_timeout: int = 1800, on_step: Callable[[StepOutcome], None] | None = None,
                 transient_retries: int = 2, kernels: str = "warm") -> None:
        if mode not in ("plan", "apply"):
            raise RunbookError(f"--mode must be plan or apply, not {mode!r}.")
        if kernels not in KERNEL_MODES:
            raise RunbookError(f"--kernels must be warm or fresh, not {kernels!r}.")
        self.kernels = kernels
        self._pool: Any = None  # the warm kernels of a run
        self._html: HtmlCopies | None = None
        self.kernel_stats: dict[str, int] = {}  # warm kernels started and thrown away by the last run
        self.rows, self.steps, self.mode = list(rows), list(steps), mode
        self.out = Path(out)
        self.batch_dir = self.out / batch_id
        self.batch_id = batch_id
        if jobs != "auto" and not (isinstance(jobs, int) or str(jobs).isdigit()):
            raise RunbookError(f"--jobs must be a number or auto, not {jobs!r}.")
        self.auto_jobs = jobs == "auto"
        self.jobs = 1 if self.auto_jobs else max(1, int(jobs))
        self.jobs_choice: JobsChoice | None = None
        self.parameters = dict(parameters or {})
        self.confirm_lines = list(confirm_lines)
        self.notebooks_dir = Path(notebooks_dir)
        self.execution_timeout = execution_timeout
        self.on_step = on_step
        self.transient_retries = max(0, int(transient_retries))
        self._lock = threading.Lock()
        missing = [s for s in self.steps if not (self.notebooks_dir / f"{s}.ipynb").is_file()]
        if missing:
            raise RunbookError(f"notebooks not found in {self.notebooks_dir}: {', '.join(missing)}.")
        check_batch_name(batch_id)
        self.declared = {step: declared_parameter_types(self.notebooks_dir / f"{step}.ipynb") for step in self.steps}
        self.parameters = self._checked_parameters(self.parameters)
        self._used: set[str] = set()  # parameters handed to a notebook that ran (for the manifest)
        self._stopping = threading.Event()  # set on Ctrl-C: workers start no further step

    def _checked_parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The extra parameters, checked and typed, before anything is written.

        Raises:
            RunbookError: a parameter the batch sets itself, one no selected step declares, a variable name
                that is not one (or is a credential), any credential-shaped value, or a value of the wrong
                type. Messages never repeat a value that looks like a credential.
        """
        from runbook_lib.secrets import credential_shape, scan_bytes, url_credential_problem

        reserved = sorted(set(given) & set(BATCH_SET_PARAMETERS))
        if reserved:
            raise RunbookError("; ".join(f"--param {name} is set by the batch itself: use {BATCH_SET_PARAMETERS[name]}"
                                         for name in reserved) + ".")
        known = set().union(*(set(d) for d in self.declared.values())) - set(BATCH_SET_PARAMETERS)
        unknown = sorted(set(given) - known)
        if unknown:
            # The closest declared names keep the sentence short; the whole list only when nothing is close.
            close = sorted({m for name in unknown for m in difflib.get_close_matches(name, known, n=2)})
            hint = (f"did you mean {', '.join(close)}?" if close
                    else f"the notebooks' parameters are {', '.join(sorted(known))}")
            raise RunbookError(f"unknown notebook parameter(s) {', '.join(unknown)}: no selected step declares them "
                               f"(check the spelling; {hint}).")
        typed: dict[str, Any] = {}
        for name, value in given.items():
            text = str(value)
            shape = credential_shape(text) if names_a_variable(name) else None
            if shape is None and scan_bytes(text.encode(), name):
                shape = "a token or credential"
            if shape:
                raise RunbookError(f"--param {name} looks like {shape}, not a value a notebook may hold (its value "
                                   f"is not repeated here): put the secret in an environment variable and pass "
                                   f"that variable's NAME{' as ' + name if names_a_variable(name) else ''}.")
            problem = url_credential_problem(f"--param {name}", value)
            if problem:
                raise RunbookError(problem)
            if names_a_variable(name) and not _VAR_NAME.match(text):
                raise RunbookError(f"--param {name} must be the NAME of an environment variable (letters, digits and "
                                   f"'_', not starting with a digit), like TFE_TOKEN.")
            kind = next((d[name] for d in self.declared.values() if name in d), None)
            typed[name] = coerce_parameter(name, value, kind)
        return typed

    def resolve_jobs(self) -> JobsChoice:
        """For `jobs="auto"`: ask the TFE host its rate limit once and choose (`choose_jobs`)."""
        self.jobs_choice = choose_jobs(len(self.rows), host_rate_limit(self.parameters))
        self.jobs = self.jobs_choice.jobs
        return self.jobs_choice

    @property
    def ledger_path(self) -> Path:
        return self.batch_dir / "ledger.sqlite"

    @property
    def rate_budget_dir(self) -> Path:
        """Where the batch's kernels share one rate budget per host (`http.FileTokenBucket`); outside the
        batch folder, so it is no part of the evidence."""
        return self.out / ".rate" / self.batch_id

    def _kernel_env(self) -> dict[str, str]:
        from runbook_lib.http import RATE_BUDGET_DIR_VAR

        return {RATE_BUDGET_DIR_VAR: str(self.rate_budget_dir.resolve())}

    def run(self) -> BatchResult:
        """Run the batch; returns every step's outcome. Writes manifest.json and summary.html at the end.

        Raises:
            LedgerError: another batch (any output folder) holds one of the environments.
            AuditError: the output folder cannot be written (read-only, full); nothing half-written is left.
            KeyboardInterrupt: after the running steps have stopped; the locks are released only then.
        """
        if self.auto_jobs and self.jobs_choice is None:
            self.resolve_jobs()
        locks = self._acquire_locks()
        old_umask = os.umask(0o077)  # notebooks, HTML, ledger, summary: readable by their owner only
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        futures: list[Any] = []
        try:
            audit.private_dir(self.batch_dir)
            for row in self.rows:
                audit.private_dir(self.batch_dir / audit.env_dirname(row.legacy_slug))
            audit.check_writable(self.batch_dir)
            self._write_mapping()
            ledger = Ledger(self.ledger_path, batch_id=self.batch_id)
            result = BatchResult(self.batch_dir, started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            self.rate_budget_dir.mkdir(parents=True, exist_ok=True)
            self._pool = kernels.KernelPool(extra_env=self._kernel_env()) if self.kernels == "warm" else None
            # Room for every slot's next seven notebooks: the niced copies lag while the steps keep the CPU busy.
            self._html = HtmlCopies(max_pending=7 * self.jobs + 2)
            outcomes_by_env = self._run_phases(pool, futures, ledger)
            for row in self.rows:
                result.outcomes.extend(outcomes_by_env[row.legacy_slug])
            self._close_execution()  # every HTML copy written before the manifest lists the files
            result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._write_evidence(result, ledger)
            audit.restrict_tree(self.batch_dir)  # files an earlier version or a by-hand run left readable
        except OSError as exc:
            self._stopping.set()
            if not audit.is_folder_problem(exc):
                raise
            raise audit.folder_error(exc, self.batch_dir) from exc
        except BaseException:
            self._stopping.set()  # Ctrl-C: steps running now go on to their end; no further step starts
            raise
        finally:
            _stop_workers(pool, futures)  # also after a second Ctrl-C: nothing is released while work runs
            try:
                self._close_execution()
            finally:
                os.umask(old_umask)
                for lock in locks:
                    lock.release()
        return result

    def _write_mapping(self) -> None:
        """The batch's mapping, facts included, as `<batch>/mapping.csv`: the steps read an environment's facts
        from it, and it is evidence of what the operator said. A different earlier one is kept beside it."""
        from runbook_lib.context import MAPPING_FILE

        target = self.batch_dir / MAPPING_FILE
        text = mapping.write_csv(self.rows)
        if target.is_file() and target.read_text(encoding="utf-8") != text:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            os.replace(target, target.with_name(f"mapping.{stamp}.csv"))
        target.write_text(text, encoding="utf-8")

    def _run_phases(self, pool: ThreadPoolExecutor, futures: list[Any], ledger: Ledger
                    ) -> dict[str, list[StepOutcome]]:
        """Run every environment's phases as `schedule.Schedule` allows, at most `jobs` at once; returns
        each environment's outcomes in step order. `futures` collects what was submitted (for a stop)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        rows = {row.legacy_slug: row for row in self.rows}
        steps_of = {phase: [s for s in self.steps if phase_of(s) == phase] for phase in range(len(PHASE_ENDS))}
        plan = Schedule(rows, [p for p, steps in steps_of.items() if steps], reads=self._state_reads(ledger),
                        caps=self.jobs_choice.caps() if self.jobs_choice else None)
        stopped: set[str] = set()  # environments with a step that did not pass: later phases are blocked
        outcomes_by_env: dict[str, list[StepOutcome]] = {slug: [] for slug in rows}
        pending: dict[Future, tuple[str, int]] = {}
        while not plan.done():
            for slug, phase in plan.ready(limit=self.jobs - len(pending)):
                plan.start(slug, phase)
                future = pool.submit(self._run_environment, rows[slug], ledger, steps_of[phase], slug in stopped)
                pending[future] = (slug, phase)
                futures.append(future)
            if not pending:
                raise RunbookError("the batch's schedule cannot go on (no phase may start and none runs); "
                                   "this is a bug: run the batch again with --jobs 1 and report it")
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                slug, phase = pending.pop(future)
                outcomes = future.result()
                outcomes_by_env[slug].extend(outcomes)
                if any(o.status not in ("passed", "skipped") for o in outcomes):
                    stopped.add(slug)
                plan.finish(slug, phase)
        return outcomes_by_env

    @staticmethod
    def _state_reads(ledger: Ledger) -> Callable[[str], frozenset[str] | None]:
        """Whose state an environment reads, from its latest step 0 evidence; None when there is none."""
        from runbook_lib.evidence import EvidenceError, StateReaders

        def reads(environment: str) -> frozenset[str] | None:
            row = ledger.latest(environment, StateReaders.STEP)
            if row is None or row.status != "passed":
                return None
            try:
                return frozenset(StateReaders.from_evidence(row.evidence, environment).reads_state_of)
            except EvidenceError:
                return None
        return reads

    def _close_execution(self) -> None:
        """Stop the kept kernels and wait for the HTML copies still being written (idempotent)."""
        pool, self._pool = self._pool, None
        html, self._html = self._html, None
        try:
            if pool is not None:
                pool.close()
                self.kernel_stats = {"started": pool.started, "discarded": pool.discarded}
        finally:
            if html is not None:
                html.drain()

    def _acquire_locks(self) -> list[Any]:
        """Take every environment's lock (see `lock_path`) before anything is written.

        Raises:
            LedgerError: another batch holds one; the locks taken so far are released.
        """
        from filelock import FileLock, Timeout

        locks: list[Any] = []
        try:
            for row in self.rows:
                lock = FileLock(str(lock_path(row.legacy_slug)))
                try:
                    lock.acquire(timeout=0)
                except Timeout as exc:
                    raise LedgerError(f"another batch is working on {row.legacy_slug} (lock {lock.lock_file}, held "
                                      f"whatever its --out); wait for it to finish or leave this environment out "
                                      f"with --env.") from exc
                locks.append(lock)
        except BaseException:
            for lock in locks:
                lock.release()
            raise
        return locks

    def _run_environment(self, row: MappingRow, ledger: Ledger, steps: Sequence[str],
                         blocked: bool) -> list[StepOutcome]:
        outcomes: list[StepOutcome] = []
        for step in steps:
            if self._stopping.is_set():
                outcome = StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
            elif blocked:
                outcome = StepOutcome(row.legacy_slug, step, "blocked", error="an earlier step did not pass")
            elif self.mode == "apply" and ledger.passed(row.legacy_slug, step, "apply"):
                outcome = StepOutcome(row.legacy_slug, step, "skipped")
            else:
                outcome = self._run_step(row, step, ledger)
                for _ in range(self.transient_retries):
                    if outcome.status == "passed" or outcome.error_type not in TRANSIENT_ERRORS:
                        break
                    if self.on_step:
                        with self._lock:
                            self.on_step(StepOutcome(row.legacy_slug, step, "retrying", outcome.seconds,
                                                     outcome.notebook, outcome.error, outcome.error_type))
                    outcome = self._run_step(row, step, ledger)
                blocked = outcome.status != "passed"
            outcomes.append(outcome)
            if self.on_step:
                with self._lock:
                    self.on_step(outcome)
        return outcomes

    def _parameters(self, row: MappingRow, step: str) -> dict[str, Any]:
        # Each notebook gets only the parameters it declares (papermill would warn about the others).
        extra = {k: v for k, v in self.parameters.items() if k in self.declared[step]}
        with self._lock:
            self._used.update(extra)
        return {
            **extra,
            "legacy_org": row.legacy_org, "legacy_env": row.legacy_env,
            "new_org": row.new_org, "workspace": row.workspace,
            "mode": self.mode, "audit_root": str(self.batch_dir.resolve()),
            "ledger_path": str(self.ledger_path.resolve()), "batch_id": self.batch_id,
            "interactive": False, "confirm": confirmation_for(step, row, self.confirm_lines),
        }

    def _run_step(self, row: MappingRow, step: str, ledger: Ledger) -> StepOutcome:
        from papermill.exceptions import PapermillExecutionError

        env_dir = self.batch_dir / audit.env_dirname(row.legacy_slug)
        env_dir.mkdir(parents=True, exist_ok=True)
        target = env_dir / f"{step}.ipynb"
        if self._html is not None:
            self._html.settle(target)  # the earlier attempt's copy is written before it is moved aside
        _attempt_path(target)
        before = ledger.latest(row.legacy_slug, step, self.mode)
        started = time.monotonic()
        error = error_type = None
        try:
            self._execute(step, target, self._parameters(row, step))
        except _Interrupted:  # Ctrl-C while this step waited for a kernel: it never started
            return StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
        except (PapermillExecutionError, RuntimeError, OSError) as exc:  # RuntimeError/OSError: the kernel died
            error, error_type = _error_text(exc), _error_type(exc)
        seconds = time.monotonic() - started
        notebook = target if target.exists() else None
        sha = audit.sha256_file(notebook) if notebook else None
        if notebook:
            if self._html is not None:
                self._html.submit(notebook)
            else:
                audit.notebook_to_html(notebook)
        row_after = ledger.latest(row.legacy_slug, step, self.mode)
        fresh = row_after if row_after and (before is None or row_after.id != before.id) else None
        if fresh and fresh.status == "running":
            # The notebook failed before its final cell: close its ledger row with papermill's error.
            ledger.finish(fresh.id, "failed", error=error or "the notebook stopped before its verdict")
            fresh = ledger.get(fresh.id)
        if fresh and notebook:
            ledger.attach_notebook(fresh.id, str(notebook.relative_to(self.batch_dir)), sha)
        if fresh is None and error is None:
            error = "the notebook recorded no outcome in the ledger"
        if fresh is None:
            ledger.record(row.legacy_slug, step, self.mode, "failed", error=error,
                          notebook_path=str(notebook.relative_to(self.batch_dir)) if notebook else None,
                          notebook_sha256=sha)
        status = ("passed" if fresh is not None and fresh.status == "passed" and error is None else
                  "waiting" if fresh is not None and fresh.status == "waiting" and error is None else "failed")
        if status == "waiting":
            error = fresh.error  # what the operator is asked to do
        return StepOutcome(row.legacy_slug, step, status, round(seconds, 2),
                           str(notebook) if notebook else None, error if status != "passed" else None,
                           error_type if status == "failed" else None)

    def _execute(self, step: str, target: Path, parameters: dict[str, Any]) -> None:
        """Run one step notebook into `target` through papermill, in a warm kernel or a fresh one.

        Raises:
            PapermillExecutionError: a cell raised (the kernel is fine and is kept).
            RuntimeError, OSError: the kernel died, hung or a cell timed out (a warm kernel is replaced).
        """
        import papermill
        from papermill.exceptions import PapermillExecutionError

        common = dict(parameters=parameters, progress_bar=False, kernel_name="python3",
                      execution_timeout=self.execution_timeout)
        source = str(self.notebooks_dir / f"{step}.ipynb")
        if self._pool is None:
            socket_dir = tempfile.mkdtemp(prefix="tfe-runbook-kernel-")  # short path: unix sockets allow ~100 chars
            try:
                papermill.execute_notebook(source, str(target), **common,
                                           kernel_manager_class=_private_kernel_manager(socket_dir, self._kernel_env()),
                                           extra_arguments=list(kernels.KERNEL_ARGUMENTS))
            finally:
                shutil.rmtree(socket_dir, ignore_errors=True)
            return
        kernels.register_engine()
        kernel = self._pool.take()  # may wait for a start slot (kernels start one per core at a time)
        if self._stopping.is_set():
            self._pool.give_back(kernel, healthy=True)
            raise _Interrupted()
        healthy = False
        try:
            papermill.execute_notebook(source, str(target), **common, engine_name=kernels.WARM_ENGINE,
                                       warm_kernel=kernel)
            healthy = True
        except PapermillExecutionError:
            healthy = True  # the notebook failed, not the kernel
            raise
        finally:
            self._pool.give_back(kernel, healthy=healthy)

    def _write_evidence(self, result: BatchResult, ledger: Ledger) -> None:
        matrix: dict[str, dict[str, str]] = {}
        for run in ledger.history():
            if run.action != catalog.RUN:  # confirmations and recoveries are not a step's outcome
                continue
            matrix.setdefault(run.environment, {})[run.step] = run.status
        # Only the parameters some notebook of this run was given: one for a step that was skipped or blocked
        # throughout did nothing, and the manifest must not suggest otherwise.
        used = {k: v for k, v in self.parameters.items() if k in self._used}
        parameters = {**used, "mode": self.mode, "steps": self.steps,
                      "environments": [r.legacy_slug for r in self.rows], "jobs": self.jobs,
                      "jobs_auto": self.jobs_choice.__dict__ if self.jobs_choice else None,
                      "kernels": self.kernels}
        summary.write_batch_evidence(self.batch_dir, ledger_path=self.ledger_path, steps=STEPS, mode=self.mode,
                                     workspaces={r.legacy_slug: r.workspace_slug for r in self.rows},
                                     parameters=parameters, outcomes=matrix, started_at=result.started_at,
                                     finished_at=result.finished_at)

