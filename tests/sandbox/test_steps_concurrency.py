"""Parallel environments of one batch must not create an organization's VCS connection twice."""

from __future__ import annotations

import multiprocessing
import os
import uuid

from runbook_lib.rehearsal import batch_environ, batch_parameters
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient


def _step_1(env_values: dict, params: dict, org: str, legacy_env: str, audit_root: str, start) -> None:
    os.environ.update(env_values)
    from runbook_lib.context import StepContext
    from runbook_lib.steps import organization

    ctx = StepContext.create(step="01_create_organization", legacy_org="acme-legacy", legacy_env=legacy_env,
                             new_org=org, mode="apply", audit_root=audit_root, interactive=False, **params)
    start.wait(30)
    organization.apply(ctx)


def test_parallel_step_1_creates_one_vcs_connection(tmp_path, seeded_sandbox):
    env_values = batch_environ(seeded_sandbox.env)
    params = batch_parameters(seeded_sandbox.env)
    org = f"race-{uuid.uuid4().hex[:8]}"
    # Slow down this organization's OAuth-client listing so the three processes' read-then-create overlap.
    seeded_sandbox.set_faults(latency_ms=400, path_prefix=f"/api/v2/organizations/{org}/oauth-clients")
    start = multiprocessing.Event()
    procs = [multiprocessing.Process(target=_step_1, args=(env_values, params, org, env, str(tmp_path / "runs"), start))
             for env in ("network-prod", "web.prod", "dns-prod")]
    for p in procs:
        p.start()
    start.set()
    try:
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    finally:
        seeded_sandbox.clear_faults()
    tfe = TfeClient(Settings.from_env(seeded_sandbox.env), read_only=True)
    assert len(list(tfe.list_oauth_clients(org))) == 1


def test_step_1_does_not_list_the_vcs_connections_of_an_organization_it_just_created(tmp_path, seeded_sandbox,
                                                                                    monkeypatch):
    """Created under the lock by its own POST, the organization has none: the list is read by verify only."""
    for name, value in batch_environ(seeded_sandbox.env).items():
        monkeypatch.setenv(name, value)
    from runbook_lib.context import StepContext
    from runbook_lib.steps import organization

    org = f"fresh-{uuid.uuid4().hex[:8]}"
    ctx = StepContext.create(step="01_create_organization", legacy_org="acme-legacy", legacy_env="web.prod",
                             new_org=org, mode="apply", audit_root=str(tmp_path / "runs"), interactive=False,
                             **batch_parameters(seeded_sandbox.env))
    mark = seeded_sandbox.log_mark()
    done = organization.apply(ctx).set_index("object")
    assert list(done["result"]) == ["created", "created"]
    assert [f"{r['method']} {r['path']}" for r in seeded_sandbox.request_log(since=mark)] == [
        f"GET /api/v2/organizations/{org}", "POST /api/v2/organizations",
        f"POST /api/v2/organizations/{org}/oauth-clients"]
    assert organization.verify(ctx).passed
    # Adopting it (a second environment of the batch) reads the list and creates nothing.
    again = organization.apply(ctx).set_index("object")
    assert list(again["result"]) == ["adopted", "adopted"]
