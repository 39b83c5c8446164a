"""The sandbox's state: SQLite under the data directory, plain dict rows, rules enforced here.

One `Store` class assembled from one part per concern (`base`: connection, transactions, users, tokens,
request log; `legacy`; `orgs`; `workspaces`; `states`; `runs`; `teams`; `migration`, the host's own
import). Like moto's `models.py`: handlers parse and
serialise, the store decides. Every rule that can refuse a request raises a `SandboxError` subclass from
here, and because the server runs each request inside one `Store.tx()` transaction, a refused request
rolls back: it changes nothing, and the request log records `changes = 0` for it.

Naming, as in the runbook's clients: `get_x` returns the object or raises (`NotFoundError`), `find_x`
returns it or None.
"""

from runbook_lib.sandbox.store.base import (FINAL_RUN_STATUSES, md5_b64, md5_hex, new_id, new_token_value, now_iso,
                                            parse_state, StoreBase)
from runbook_lib.sandbox.store.legacy import LegacyStore
from runbook_lib.sandbox.store.migration import MigrationStore
from runbook_lib.sandbox.store.orgs import OrganizationStore
from runbook_lib.sandbox.store.runs import RunStore
from runbook_lib.sandbox.store.states import StateStore
from runbook_lib.sandbox.store.teams import TeamStore
from runbook_lib.sandbox.store.workspaces import WorkspaceStore


class Store(MigrationStore, TeamStore, LegacyStore, OrganizationStore, WorkspaceStore, StateStore, RunStore,
            StoreBase):
    """SQLite-backed store of both APIs' objects.

    Args:
        path: the database file (created with its tables if missing).
    """


__all__ = ["FINAL_RUN_STATUSES", "Store", "md5_b64", "md5_hex", "new_id", "new_token_value", "now_iso",
           "parse_state"]
