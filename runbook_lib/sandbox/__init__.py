"""The rehearsal sandbox: one local server speaking the legacy `/api/v1` and the new `/api/v2` TFE APIs.

Layout (moto's): `routes` (URL table) -> `legacy_api` / `tfe_api` / `admin_api` (handlers: parse,
call the store, serialise) -> `store` (SQLite; the rules). `errors` are classes that know their status
and wire body, rendered in one place by `server`. `faults` holds fault injection and the rate limit,
`seed` the users and the legacy estate, `control` the `Sandbox` Python API.

Seams for the next issue (real VCS and a run worker): `Store.run_listeners` are called after commit
for every new `pending` run (`("legacy"|"tfe", run_id)`); runs and plans are store records with status
fields (`Store.update_run`, `Store.update_plan`, `Store.update_legacy_run`); configuration tarballs are
in `Store.configuration_tarball`; git repositories live under `<data>/git/<org>/<repo>.git`; each
workspace's webhook URL is `<address>/webhooks/vcs/<workspace id>` (not served yet).

Issue 4 built on them: `vcs` (push hooks, the `/_sandbox/vcs/push` webhook, what a push starts),
`runner` (the run worker pool: real terraform plan/apply), `runs_api` (apply/discard/cancel, ingress
attributes, run settings). Contract: docs/sandbox-vcs-runs.md.
"""

from runbook_lib.sandbox.control import Sandbox, read_env_file
from runbook_lib.sandbox.faults import FaultConfig

__all__ = ["Sandbox", "FaultConfig", "read_env_file"]
