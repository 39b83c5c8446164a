"""The rehearsal sandbox: one local server speaking the legacy `/api/v1` and the new `/api/v2` TFE APIs.

Layout (moto's): `routes` (URL table) -> handlers (parse, call the store, serialise): `legacy_api` (/api/v1),
`tfe_api` (discovery, ping, account, shared helpers), `orgs_api`, `workspaces_api`, `states_api`,
`tfe_runs_api` and `runs_api` (/api/v2), `admin_api` (the sandbox's own controls) -> `store` (SQLite; the
rules, one module per concern). `errors` are classes that know their status and wire body, rendered in one
place by `server`. `faults` holds fault injection and the rate limit, `seed` the users and the legacy
estate, `control` the `Sandbox` Python API, `vcs` real git repositories whose pushes start runs, `runner`
the run worker pool (real terraform plan/apply). Contracts: docs/legacy-api-contract.md,
docs/sandbox-vcs-runs.md.
"""

from runbook_lib.sandbox.control import Sandbox, read_env_file
from runbook_lib.sandbox.faults import FaultConfig

__all__ = ["Sandbox", "FaultConfig", "read_env_file"]
