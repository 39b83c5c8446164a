"""`Sandbox`: start, seed, drive and stop the rehearsal server from Python (tests, notebooks, CLI).

    with Sandbox(tmp_path, seed=10, tls=True) as sb:
        env = sb.env                  # ATLAS_ADDRESS, ATLAS_TOKEN, TFE_ADDRESS, TFE_TOKEN, ...
        mark = sb.log_mark()
        ...                           # drive clients against sb.tfe_address / sb.legacy_address
        rows = sb.request_log(since=mark, method="POST")
        sb.set_faults(error_rate=0.2, seed=7)
        sb.restart()                  # same port, same data: everything persisted
        sb.clear_faults()

Two modes: in-process (default; the server runs in a thread of this process) and `subprocess=True`
(the `tfe-runbook sandbox serve` command in a child process, for benchmarks and for crash-like
restarts). Both expose the same methods; the subprocess mode drives the admin surface
(`/_sandbox/...`, see `admin_api`) with the secret from `<data>/admin.secret`.

Fault settings and the rate limit chosen through this object survive `restart()`.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import ssl
import subprocess as _subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from runbook_lib import terraform
from runbook_lib.errors import ConfigError
from runbook_lib.sandbox import seed as seed_mod
from runbook_lib.sandbox.faults import FaultConfig, RunProfile
from runbook_lib.sandbox.server import ADMIN_HEADER, ADMIN_SECRET_FILE, DOCUMENTED, SandboxServer

log = logging.getLogger("runbook_lib.sandbox")

ENV_FILE = "sandbox.env"
CLI_CONFIG_FILE = "terraform.rc"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def write_env_file(data_dir: Path, values: dict[str, str]) -> Path:
    """Write `<data>/sandbox.env` (lines `export NAME=value`, mode 0600: it holds tokens)."""
    path = data_dir / ENV_FILE
    text = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    tmp = path.with_suffix(".env.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse a `sandbox.env` file back into a dict."""
    values = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            name, _, raw = line[len("export "):].partition("=")
            parts = shlex.split(raw)
            values[name] = parts[0] if parts else ""
    return values


def environment_for(server: SandboxServer, tokens: dict[str, str]) -> dict[str, str]:
    """The variables `sandbox.env` holds, writing the Terraform 1.x CLI config file they point at.

    Args:
        server: the started server (its port is known).
        tokens: {"operator": token, "outsider": token}.
    """
    data = server.data_dir
    mirror = terraform.provider_mirror_1x(data / "providers-1.x")
    rc = terraform.write_cli_config(data / CLI_CONFIG_FILE, mirror_dir=mirror,
                                    credentials={server.hostname: tokens["operator"]})
    if not server.tls:
        # Terraform 1.x discovers services only over HTTPS; a host block points it at plain HTTP instead.
        base = server.base_url()
        with open(rc, "a") as handle:
            handle.write(f'host "{server.hostname}" {{\n  services = {{\n'
                         f'    "tfe.v2" = "{base}/api/v2/"\n    "tfe.v2.1" = "{base}/api/v2/"\n'
                         f'    "tfe.v2.2" = "{base}/api/v2/"\n    "state.v2" = "{base}/api/v2/"\n'
                         f'    "motd.v1" = "{base}/api/terraform/motd"\n  }}\n}}\n')
    values = {
        "ATLAS_ADDRESS": server.base_url(),
        "ATLAS_TOKEN": tokens["operator"],
        "TFE_ADDRESS": server.base_url(),
        "TFE_TOKEN": tokens["operator"],
        "TFE_HOSTNAME": server.hostname,
        "SANDBOX_LEGACY_ORG": seed_mod.LEGACY_ORG,
        # The legacy web UI (sign in with the operator's name and ATLAS_TOKEN as the password).
        "SANDBOX_LEGACY_UI": f"{server.base_url()}/terraform/{seed_mod.LEGACY_ORG}/environments",
        "SANDBOX_LEGACY_PROFILE": server.legacy_profile,
        "SANDBOX_GIT_ROOT": str(data / "git"),
        "TFE_RUNBOOK_GIT_BASE": str(data / "git"),  # runbook_lib.git.repo_url("org/repo") -> the bare repo
        "SANDBOX_OUTSIDER_TOKEN": tokens["outsider"],
        "SANDBOX_DATA_DIR": str(data),
        "SANDBOX_ADMIN_SECRET_FILE": str(data / ADMIN_SECRET_FILE),
        "TF_CLI_CONFIG_FILE": rc,
    }
    if server.tls and server.ca_file:
        values.update(SSL_CERT_FILE=str(server.ca_file), REQUESTS_CA_BUNDLE=str(server.ca_file),
                      ATLAS_CAFILE=str(server.ca_file))
    return values


def start_server(data_dir: Path, *, host: str, port: int, tls: bool, seed: int,
                 rate_limit: float | None, legacy_profile: str = DOCUMENTED) -> tuple[SandboxServer, dict[str, str]]:
    """Start a server on `data_dir`, bootstrap and (once per data directory) seed it, write sandbox.env.

    Returns:
        (server, the sandbox.env values).

    Raises:
        TerraformError: seeding failed.
    """
    server = SandboxServer(data_dir, host=host, port=port, tls=tls, rate_limit=rate_limit,
                           legacy_profile=legacy_profile)
    server.start()
    try:
        tokens = seed_mod.bootstrap(server.store)
        already = int(server.store.find_meta("seeded_n", "0") or 0)
        if seed and not already:
            # The seed is set-up, not the system under test: it must not trip the per-token limit.
            server.set_rate_limit(None)
            try:
                result = seed_mod.seed_estate(server.store, seed, data_dir=data_dir, address=server.base_url(),
                                              ca_file=str(server.ca_file) if server.ca_file else None)
            finally:
                server.set_rate_limit(rate_limit)
            log.info("seeded %d environments in %.1fs", len(result.environments), result.seconds)
        elif seed and already != seed:
            log.warning("data directory already seeded with %d environments; --seed %d ignored", already, seed)
        if server.runner is not None:
            server.runner.install_hooks()  # the seed made the repositories after the runner started
        values = environment_for(server, tokens)
        write_env_file(data_dir, values)
    except BaseException:
        server.stop()
        raise
    return server, values


def _env_value(name: str, doc: str, *, required: bool = True) -> Any:
    """A read-only `Sandbox` property: the variable `name` of its `sandbox.env` (None when not `required`
    and absent)."""
    if required:
        return property(lambda self: self.env[name], doc=doc)
    return property(lambda self: self.env.get(name), doc=doc)


class Sandbox:
    """The rehearsal sandbox as a context manager.

    Args:
        data_dir: data directory (None: a new temporary directory, removed on `stop()`).
        host: listen address (loopback by default).
        port: port (0: a free one, kept across `restart()`).
        tls: serve HTTPS with a trustme CA (`ca_file`, also `SSL_CERT_FILE` in `env`).
        seed: number of legacy environments to seed (once per data directory).
        rate_limit: requests per second per token (None: off).
        subprocess: run `tfe-runbook sandbox serve` in a child process instead of a thread.
        state_finalize_seconds: delay between a hosted state upload and its version becoming `finalized`
            (None: `$TFE_SANDBOX_STATE_FINALIZE_SECONDS`, else 0.2 s; see `store.states`).
        runs: how long runs take and how many run at once (`RunProfile`; None: fast, for tests). Saved in
            the data directory, so a restart (and `tfe-runbook sandbox serve` on it) keeps it.
        legacy_profile: `documented` (default: only what the legacy host documented, plus its web UI) or
            `site-adapter` (also the undocumented endpoints a site's own adapter might offer; never a
            default: name it where you mean it).
    """

    def __init__(self, data_dir: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 tls: bool = False, seed: int = 0, rate_limit: float | None = 30.0,
                 subprocess: bool = False, state_finalize_seconds: float | None = None,
                 runs: RunProfile | None = None, legacy_profile: str = DOCUMENTED) -> None:
        self.state_finalize_seconds = state_finalize_seconds
        self.legacy_profile = legacy_profile
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tfe-sandbox-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir).resolve()
        self.host, self.port, self.tls, self.seed = host, port, tls, seed
        self._rate_limit = rate_limit
        self._faults: FaultConfig | None = None
        self.use_subprocess = subprocess
        self.runs = runs
        self._server: SandboxServer | None = None
        self._proc: Any = None
        self.env: dict[str, str] = {}

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "Sandbox":
        """Start (and seed on first use of the data directory); returns once it answers requests.

        Raises:
            ConfigError: the subprocess did not become ready.
            TerraformError: seeding failed.
        """
        if self.runs is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.runs.save(self.data_dir)
        if self.use_subprocess:
            self._start_subprocess()
        else:
            self._server, self.env = start_server(self.data_dir, host=self.host, port=self.port, tls=self.tls,
                                                  seed=self.seed, rate_limit=self._rate_limit,
                                                  legacy_profile=self.legacy_profile)
            if self.state_finalize_seconds is not None:
                self._server.store.state_finalize_seconds = max(0.0, float(self.state_finalize_seconds))
            self.port = self._server.port
        if self._faults is not None:
            self._apply_faults(self._faults)
        return self

    def stop(self) -> None:
        """Stop the server (in-process: drop connections, close the store; subprocess: SIGTERM)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except _subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def restart(self) -> None:
        """Stop and start again on the same port and data: everything persisted is still there."""
        tmp, self._tmp = self._tmp, None  # keep a temporary data directory across the restart
        self.stop()
        self._tmp = tmp
        self.start()

    def _start_subprocess(self) -> None:
        if not self.port:
            self.port = free_port(self.host)
        env_file = self.data_dir / ENV_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if env_file.exists():
            env_file.unlink()  # its reappearance is the readiness signal
        cmd = [sys.executable, "-m", "runbook_lib.cli", "sandbox", "serve", "--data", str(self.data_dir),
               "--host", self.host, "--port", str(self.port), "--seed", str(self.seed),
               "--rate-limit", str(self._rate_limit or 0), "--legacy-profile", self.legacy_profile]
        if self.tls:
            cmd.append("--tls")
        log_file = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child process
        # The server's own output goes to the data directory's server.log.
        child_env = dict(os.environ)
        if self.state_finalize_seconds is not None:
            child_env["TFE_SANDBOX_STATE_FINALIZE_SECONDS"] = str(max(0.0, float(self.state_finalize_seconds)))
        self._proc = _subprocess.Popen(cmd, stdout=log_file, stderr=_subprocess.STDOUT,  # noqa: S603
                                       start_new_session=True, env=child_env)
        log_file.close()  # the child holds its own descriptor
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(f"the sandbox server exited with {self._proc.returncode}; "
                                  f"see {self.data_dir / 'server.log'}")
            if env_file.exists():
                self.env = read_env_file(env_file)
                return
            time.sleep(0.1)
        raise ConfigError(f"the sandbox server did not become ready in 180s; see {self.data_dir / 'server.log'}")

    # --- addresses and tokens ----------------------------------------------------------------------

    # Addresses and tokens are what `sandbox.env` says, so a subprocess sandbox and an in-process one
    # answer alike: each property reads one variable of that file.
    address = _env_value("TFE_ADDRESS", "Base URL of both APIs (`http(s)://localhost:PORT`).")
    legacy_address = address
    tfe_address = address
    hostname = _env_value("TFE_HOSTNAME", "`localhost:PORT`, as a Terraform `cloud` block's `hostname` names it.")
    operator_token = _env_value("TFE_TOKEN", "The seeded operator's token (valid on both APIs).")
    outsider_token = _env_value("SANDBOX_OUTSIDER_TOKEN", "The second user's token (its own organizations only).")
    legacy_org = _env_value("SANDBOX_LEGACY_ORG", "The seeded legacy organization (`acme-legacy`).")
    ca_file = _env_value("SSL_CERT_FILE", "CA certificate to trust with `tls=True`, else None.", required=False)

    @property
    def env_file(self) -> Path:
        """`<data>/sandbox.env`."""
        return self.data_dir / ENV_FILE

    @property
    def store(self):  # noqa: ANN201 - Store; in-process mode only
        """The live `Store` (in-process mode only; for white-box assertions in tests).

        Raises:
            ConfigError: in subprocess mode.
        """
        if self._server is None:
            raise ConfigError("the store is only reachable in-process; use the admin methods instead")
        return self._server.store

    def seeded_environments(self) -> list[seed_mod.EnvSpec]:
        """The specs of the seeded legacy environments (names, repos, special cases)."""
        return seed_mod.environment_specs(self.seed)

    # --- admin surface -----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        secret = (self.data_dir / ADMIN_SECRET_FILE).read_text().strip()
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.address + path, data=data, method=method,
                                         headers={ADMIN_HEADER: secret, "Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310 - our URL
            return json.loads(response.read() or b"null")

    def set_faults(self, config: FaultConfig | None = None, **settings: Any) -> None:
        """Switch fault injection on (a `FaultConfig`, or its fields as keywords; see `faults.FaultConfig`)."""
        self._faults = config or FaultConfig.from_dict(settings)
        self._apply_faults(self._faults)

    def _apply_faults(self, config: FaultConfig | None) -> None:
        if self._server is not None:
            self._server.faults.configure(config)
        elif config is None:
            self._admin("DELETE", "/_sandbox/faults")
        else:
            self._admin("PUT", "/_sandbox/faults", config.to_dict())

    def clear_faults(self) -> None:
        """Switch fault injection off."""
        self._faults = None
        self._apply_faults(None)

    def set_rate_limit(self, limit: float | None) -> None:
        """Requests per second per token (None: off)."""
        self._rate_limit = limit
        if self._server is not None:
            self._server.set_rate_limit(limit)
        else:
            self._admin("PUT", "/_sandbox/rate-limit", {"limit": limit})

    def request_log(self, since: int = 0, *, method: str | None = None, path_prefix: str | None = None,
                    status: int | None = None, username: str | None = None) -> list[dict[str, Any]]:
        """Logged requests after request id `since`, oldest first.

        Returns:
            Rows {"id", "ts", "method", "path", "status", "token_name", "username", "changes", "fault",
            "duration_ms"}; `changes` counts database rows written (0 for refused requests).
        """
        if self._server is not None:
            return self._server.store.request_log(since_id=since, method=method, path_prefix=path_prefix,
                                                  status=status, username=username)
        query = {"since": since, "method": method, "path_prefix": path_prefix, "status": status,
                 "username": username}
        encoded = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self._admin("GET", f"/_sandbox/requests?{encoded}")["requests"]

    def log_mark(self) -> int:
        """Id of the newest logged request: pass it as `since` to see only what follows."""
        rows = self.request_log()
        return rows[-1]["id"] if rows else 0

    # --- VCS and runs (see docs/sandbox-vcs-runs.md) --------------------------------------------

    def create_repository(self, identifier: str, default_branch: str = "master") -> Path:
        """Create an empty bare repository `<data>/git/<org>/<repo>.git` with the push hook; returns its path.

        Raises:
            GitError: git failed.
        """
        from runbook_lib.sandbox import vcs  # noqa: PLC0415 - only this method needs it

        return vcs.create_repository(self.data_dir, identifier, default_branch)

    def run_settings(self, *, paused: bool | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Read or change the run worker: `paused` (queued runs stay pending), `timeout` (seconds per run).

        Returns:
            {"paused", "timeout", "workers", "idle"}; `idle` is True when no run is queued or running.
        """
        body = {k: v for k, v in (("paused", paused), ("timeout", timeout)) if v is not None}
        if self._server is not None and self._server.runner is not None:
            runner = self._server.runner
            if timeout is not None:
                runner.timeout_s = float(timeout)
            if paused is not None:
                runner.pause() if paused else runner.resume()
            return {"paused": runner.paused, "timeout": runner.timeout_s, "workers": runner.workers,
                    "idle": runner.idle()}
        return self._admin("PUT" if body else "GET", "/_sandbox/runs", body if body else None)

    def wait_for_runs(self, timeout: float = 120.0) -> None:
        """Block until the run worker is idle: nothing queued, confirmed or running.

        A run `planned` and awaiting confirmation does not count; a run held `pending` by a workspace
        lock does (it keeps this waiting until `timeout`).

        Raises:
            TimeoutError: still busy after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.run_settings()["idle"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sandbox runs still busy after {timeout:.0f}s")
            time.sleep(0.1)

    def reset(self) -> None:
        """Remove every object of both APIs and bootstrap again (same users and tokens; no seed)."""
        if self._server is not None:
            self._server.store.reset()
            seed_mod.bootstrap(self._server.store)
        else:
            self._admin("POST", "/_sandbox/reset")

