"""Environment locks: a second batch (whatever its output folder) cannot work on an environment a batch holds.

A batch holds every environment of its mapping from before it writes anything until no step of it runs any
more. The locks live in one file of a per-user folder (`lock_root`), as byte-range locks on one open file
(Linux's open-file-description locks, `F_OFD_SETLK`): one descriptor per batch whatever the number of
environments (an estate of 5,000 runs under the usual ``ulimit -n 1024``), released by the kernel when the
batch's process ends, however it ends. Each environment takes the byte at an offset derived from its key.

An environment's key is the legacy host and the environment (`<org>/<env>`). The host is where
``$ATLAS_ADDRESS`` leads (`host_identity`): the first of the addresses its name resolves to, with the port,
so two spellings of one host (`http://localhost:P` and `http://127.0.0.1:P`, `https://h` and `https://h:443`,
a DNS alias) are one host, and a refusal says the other batch may have spelled it otherwise. A name that
does not resolve is keyed on its spelling, normalized (`normalized_address`: scheme and host in lower case,
the default port dropped). One key per environment: the kernel checks byte-range locks one against another,
so 5,000 take about half a second, and twice as many keys would take four times as long. The workspace
lock taken in step 2 guards the server side.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import struct
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from runbook_lib.errors import LedgerError

#: The one lock file of every batch of this user, in `lock_root`.
LOCK_FILE = "environments.lock"
#: Byte offsets are taken from 48 bits of a key's sha256: two keys meet by chance once in ~10^14 pairs.
_OFFSET_BITS = 48
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def normalized_address(address: str) -> str:
    """``scheme://host[:port]`` with scheme and host in lower case and the scheme's default port dropped
    (``HTTPS://Atlas.Example.com:443/`` -> ``https://atlas.example.com``); "" for no address."""
    text = (address or "").strip()
    if not text:
        return ""
    parts = urlsplit(text if "://" in text else f"https://{text}")
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:  # not a port: keep the spelling, the host check names the setting
        return text.lower().rstrip("/")
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port and port != _DEFAULT_PORTS.get(scheme) else "")


def host_identity(address: str) -> str:
    """Where a legacy address leads: ``<first resolved IP> port <port>``, or the normalized spelling when the
    name does not resolve (the batch's host check then names the setting)."""
    normal = normalized_address(address)
    parts = urlsplit(normal)
    if not parts.hostname:
        return normal
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return normal
    addresses = sorted({str(info[4][0]) for info in infos})
    return f"{addresses[0]} port {port}" if addresses else normal


def _offset(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> (64 - _OFFSET_BITS)


class EnvironmentLocks:
    """A batch's environment locks: one open lock file, one byte-range lock per key. `release()` (or the end of
    the process) lets them go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.count = 0

    def _lock(self, offset: int) -> bool:
        """Take the byte at `offset` without waiting; False when another holder has it."""
        assert self._fd is not None
        if hasattr(fcntl, "F_OFD_SETLK"):
            # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for open-file-description locks)
            request = struct.pack("hhxxxxqqi4x", fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
            try:
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, request)
            except (BlockingIOError, PermissionError):
                return False
        else:  # POSIX record locks elsewhere: they exclude other processes (not two batches in one process)
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
            except (BlockingIOError, PermissionError):
                return False
        self.count += 1
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases every lock taken through it


def acquire_locks(environments: Iterable[str], environ: Mapping[str, str] | None = None) -> EnvironmentLocks:
    """Take every environment's lock (see the module) before anything is written.

    Raises:
        LedgerError: another batch holds one; nothing stays taken.
    """
    env = os.environ if environ is None else environ
    raw = (env.get("ATLAS_ADDRESS") or "").strip()
    host = host_identity(raw) if raw else ""
    locks = EnvironmentLocks(lock_root(env) / LOCK_FILE)
    try:
        for environment in environments:
            if not locks._lock(_offset(f"{host}|{environment}")):
                where = f"ATLAS_ADDRESS {raw}, which leads to {host}" if raw else "no ATLAS_ADDRESS"
                raise LedgerError(f"another batch is working on {environment} of this legacy host ({where}; that "
                                  f"batch may spell the same host otherwise, like localhost for 127.0.0.1, a DNS "
                                  f"alias or the default port written out), whatever its --out; wait for it to "
                                  f"finish or leave this environment out with --env.")
    except BaseException:
        locks.release()
        raise
    return locks
