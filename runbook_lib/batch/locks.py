"""Environment locks: a second batch (whatever its output folder) cannot work on an environment a batch holds.

One lock file per legacy environment, in one per-user folder (`lock_root`). The workspace lock taken in
step 2 guards the server side.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from runbook_lib import audit
from runbook_lib.errors import LedgerError


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



def acquire_locks(environments: Iterable[str]) -> list[Any]:
    """Take every environment's lock (see `lock_path`) before anything is written.

    Raises:
        LedgerError: another batch holds one; the locks taken so far are released.
    """
    from filelock import FileLock, Timeout

    locks: list[Any] = []
    try:
        for environment in environments:
            lock = FileLock(str(lock_path(environment)))
            try:
                lock.acquire(timeout=0)
            except Timeout as exc:
                raise LedgerError(f"another batch is working on {environment} (lock {lock.lock_file}, held "
                                  f"whatever its --out); wait for it to finish or leave this environment out "
                                  f"with --env.") from exc
            locks.append(lock)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks
