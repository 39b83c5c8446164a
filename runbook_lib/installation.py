"""What this installation has, for `tfe-runbook doctor` and `tfe-runbook notebooks`.

- The step notebooks ship inside the package (`NOTEBOOKS_DIR`); `copy_notebooks` puts them into a working
  folder for JupyterLab, where the survey (notebook 00) writes `runs/interactive/mapping.csv` and a batch
  started in the same folder writes `runs/<batch>`.
- `variables_set`: which of the runbook's environment variables are set, by name only (a value is never read
  out, not even its length).
- `ca_bundle_check`: the CA bundle the clients would use (`REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`), read as
  PEM certificates.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from runbook_lib import catalog
from runbook_lib.errors import RunbookError

#: The step notebooks: package data of an installed runbook; in a checkout, `runbook_lib/notebooks` links to
#: the top-level `notebooks/` that JupyterLab users open.
NOTEBOOKS_DIR = Path(__file__).resolve().parent / "notebooks"

#: The variables the runbook reads (README, "Settings and secrets"), in the order doctor lists them.
KNOWN_VARIABLES = ("ATLAS_ADDRESS", "ATLAS_TOKEN", "TFE_ADDRESS", "TFE_TOKEN", "VCS_OAUTH_TOKEN",
                   "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "TFE_RUNBOOK_TERRAFORM", "TFE_RUNBOOK_GIT_BASE",
                   "TFE_RUNBOOK_LOCK_DIR")
#: Prefix of the variables that carry sensitive variable values for step 2 (listed by name).
SENSITIVE_PREFIX = "TFE_RUNBOOK_VAR_"


def missing_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[str]:
    """The runbook's step notebooks that `folder` lacks (empty: all there)."""
    return [step for step in catalog.STEPS if not (folder / f"{step}.ipynb").is_file()]


@dataclass(frozen=True)
class CopiedNotebooks:
    folder: Path
    written: tuple[str, ...]
    unchanged: tuple[str, ...]


def copy_notebooks(destination: str | Path, *, force: bool = False, source: Path = NOTEBOOKS_DIR) -> CopiedNotebooks:
    """Copy the step notebooks into a working folder for JupyterLab (created if missing).

    A notebook already there with the same bytes is left alone; one that differs (edited, or from another
    version of the runbook) is replaced only with `force`, so nobody's edits are lost by a second call.

    Raises:
        RunbookError: the package's notebooks are missing, the folder cannot be written, or notebooks there
            differ and `force` is not set (nothing is copied then).
    """
    missing = missing_notebooks(source)
    if missing:
        raise RunbookError(f"this installation lacks the notebooks {', '.join(missing)} in {source}; reinstall "
                           f"the runbook (pip install .) from a complete checkout.")
    folder = Path(destination)
    if folder.exists() and not folder.is_dir():
        raise RunbookError(f"{folder} is a file, not a folder; give a folder for the notebooks.")
    names = [f"{step}.ipynb" for step in catalog.STEPS]
    differing = [n for n in names if (folder / n).is_file() and (folder / n).read_bytes() != (source / n).read_bytes()]
    if differing and not force:
        raise RunbookError(f"{folder} already holds other versions of {', '.join(differing)} (edited, or from another "
                           f"runbook version); nothing was copied: choose an empty folder, or add --force to replace "
                           f"them.")
    written, unchanged = [], []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (folder / name).is_file() and name not in differing:
                unchanged.append(name)
                continue
            shutil.copyfile(source / name, folder / name)
            written.append(name)
    except OSError as exc:
        raise RunbookError(f"cannot write the notebooks into {folder} ({exc.strerror}); choose a folder you can "
                           f"write.") from exc
    return CopiedNotebooks(folder, tuple(written), tuple(unchanged))


def variables_set(environ: Mapping[str, str] | None = None, extra: tuple[str, ...] = ()) -> dict[str, bool]:
    """Whether each variable the runbook reads is set (non-empty), by name; `TFE_RUNBOOK_VAR_*` names that are
    set are listed too. Values are never returned."""
    env = os.environ if environ is None else environ
    names = list(dict.fromkeys((*KNOWN_VARIABLES, *extra)))
    found = {name: bool(env.get(name, "").strip()) for name in names}
    for name in sorted(n for n in env if n.startswith(SENSITIVE_PREFIX)):
        found[name] = bool(env[name].strip())
    return found


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


@dataclass(frozen=True)
class CaBundleCheck:
    ok: bool
    detail: str


def ca_bundle_check(environ: Mapping[str, str] | None = None) -> CaBundleCheck:
    """The CA bundle the clients would use: `REQUESTS_CA_BUNDLE`, else `SSL_CERT_FILE` (as `Settings` reads
    them), else the system store. A bundle must be a readable file of PEM certificates."""
    env = os.environ if environ is None else environ
    var = next((name for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE") if env.get(name, "").strip()), None)
    if var is None:
        return CaBundleCheck(True, "none set: the system store verifies TLS (set REQUESTS_CA_BUNDLE for a private CA)")
    path = Path(env[var].strip())
    try:
        data = path.read_bytes()
    except OSError as exc:
        return CaBundleCheck(False, f"${var} names {path}, which cannot be read ({exc.strerror}); point it at the "
                                    f"PEM file of your CA")
    count = len(_PEM_CERT.findall(data))
    if not count:
        return CaBundleCheck(False, f"${var} names {path}, which holds no PEM certificate (-----BEGIN CERTIFICATE-----"
                                    f"); point it at the PEM file of your CA")
    other = "SSL_CERT_FILE" if var == "REQUESTS_CA_BUNDLE" else "REQUESTS_CA_BUNDLE"
    note = ""
    if env.get(other, "").strip() and Path(env[other].strip()) != path:
        note = f"; ${other} names another file, which the runbook's clients do not use (Terraform reads SSL_CERT_FILE)"
    return CaBundleCheck(True, f"${var}: {path}, {count} certificate(s){note}")
