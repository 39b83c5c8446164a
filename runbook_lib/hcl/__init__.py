"""Find and rewrite `terraform { backend ... }` / `cloud` blocks safely (seed steps 3.b, 3.d and 5).

Public API:
- `find_backends(path)`, `find_remote_state_refs(path)`: DataFrames of what is configured, per root;
  `find_all(path)`: both, reading each file once.
- `plan_rewrite(root, from_=, to=, target=, hostname=)`: the move from `<LEGACY_ORG>/<ENV>` to
  `<NEW_ORG>/<WORKSPACE>` (atlas `name`, or a `remote` backend / `cloud` block), as a `RewritePlan`
  with `.frame()` and `.diff()`; nothing is written.
- `plan_add_legacy_backend(root, from_=)`: step 3.b, the atlas block where none is configured.
- `plan_remote_state_rewrite(path, from_=, to=)`: atlas `terraform_remote_state` sources, separately.
- `apply_rewrite(plan, backup=True)`: write, with a backup beside each file or a clean git tree.

Every refusal is an `HclError` with one sentence naming the fix; nothing is written then.
"""

from runbook_lib.hcl.find import (FIND_COLUMNS, REMOTE_STATE_COLUMNS, BackendBlock, RemoteStateRef,
                                  find_all, find_backends, find_remote_state_refs)
from runbook_lib.hcl.rewrite import (DEFAULT_HOSTNAME, LEGACY_BACKEND_FILE, PLAN_COLUMNS, TARGETS, ApplyResult,
                                     Change, FileRewrite, RewritePlan, apply_rewrite, effective_backend,
                                     parse_ref, plan_add_legacy_backend, plan_remote_state_rewrite, plan_rewrite)

__all__ = [
    "FIND_COLUMNS", "REMOTE_STATE_COLUMNS", "PLAN_COLUMNS", "TARGETS", "DEFAULT_HOSTNAME", "LEGACY_BACKEND_FILE",
    "BackendBlock", "RemoteStateRef", "Change", "FileRewrite", "RewritePlan", "ApplyResult",
    "find_all", "find_backends", "find_remote_state_refs", "effective_backend", "parse_ref",
    "plan_rewrite", "plan_add_legacy_backend", "plan_remote_state_rewrite", "apply_rewrite",
]
