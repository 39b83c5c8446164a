"""The runbook's clients and inventory against a running sandbox, with and without faults (issue 5)."""

from __future__ import annotations

import pytest
from pytfe import TFEClient, TFEConfig
from pytfe.errors import NotFound

from runbook_lib import inventory, mapping
from runbook_lib.errors import NotFoundError, ServerError
from runbook_lib.http import RetryPolicy
from runbook_lib.legacy import NOT_FOUND, STATE, LegacyClient, configuration_variables
from runbook_lib.rehearsal import operator_rows
from runbook_lib.sandbox import Sandbox
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01)


def _settings(sb: Sandbox) -> Settings:
    return Settings.from_env(sb.env)


def test_both_clients_read_the_seeded_estate(seeded_sandbox: Sandbox):
    s = _settings(seeded_sandbox)
    legacy, tfe = LegacyClient(s, read_only=True), TfeClient(s, read_only=True)
    names = legacy.environments_with_state("acme-legacy")  # the documented states list
    assert {"network-prod", "web.prod", "app-staging", "db-prod"} <= set(names) and names == sorted(names)
    state = legacy.get_state("acme-legacy", "network-prod")
    assert state.serial >= 1 and state.lineage and len(state.md5) == 32
    assert legacy.read_state("acme-legacy", "network-prod").found == STATE
    version = legacy.latest_configuration_version("acme-legacy", "network-prod")
    assert version["metadata"]["remote_slug"] == "acme-legacy/infrastructure"
    assert {v["key"] for v in configuration_variables(version)} == {"environment", "cidr_block"}  # no env variable
    assert legacy.get_user("acme-legacy")["username"] == "acme-legacy"
    assert tfe.ping()["api_version"] >= "2.5"
    with pytest.raises(NotFoundError):
        tfe.get_organization("outsider-corp")  # another user's organization answers 404
    # Another organization's environment: every documented read answers 404, which proves nothing but "not visible".
    with pytest.raises(NotFoundError, match="does not exist or \\$ATLAS_TOKEN cannot see it"):
        legacy.get_state("outsider-legacy", "private-env")
    assert legacy.read_state("outsider-legacy", "private-env").found == NOT_FOUND
    assert legacy.latest_configuration_version("outsider-legacy", "private-env") is None
    with pytest.raises(NotFoundError):
        legacy.environments_with_state("outsider-legacy")
    with pytest.raises(NotFoundError):
        legacy.get_user("outsider-legacy")


@pytest.fixture
def faulty(fresh_sandbox: Sandbox):
    """A fresh sandbox with an organization of 30 workspaces, made before the faults are switched on."""
    fresh_sandbox.set_rate_limit(None)
    tfe = TfeClient(_settings(fresh_sandbox), retry=FAST)
    tfe.create_organization("faulty", "ops@acme.example")
    for i in range(30):
        tfe.create_workspace("faulty", f"ws-{i:02d}")
    return fresh_sandbox


def test_reads_survive_5xx_429_bursts_and_dropped_connections(faulty: Sandbox):
    faulty.set_faults(error_rate=0.15, burst_rate=0.05, burst_length=2, drop_rate=0.05, seed=11)
    tfe = TfeClient(_settings(faulty), read_only=True, retry=FAST)
    mark = faulty.log_mark()
    for _ in range(5):
        assert len(list(tfe.list_workspaces("faulty"))) == 30
        assert tfe.get_workspace("faulty", "ws-07").get("name") == "ws-07"
        assert tfe.get_organization("faulty").id == "faulty"
    rows = faulty.request_log(since=mark)
    faulted = [r for r in rows if r["fault"]]
    assert faulted, "the fault settings must have hit some requests"
    assert {r["method"] for r in rows} == {"GET"}
    assert sum(r["changes"] for r in rows) == 0


def test_a_post_answered_5xx_is_sent_again_only_after_a_read_back(faulty: Sandbox):
    faulty.set_faults(error_rate=1.0, error_statuses=[503], methods=["POST"], seed=3)
    tfe = TfeClient(_settings(faulty), retry=FAST)
    mark = faulty.log_mark()
    with pytest.raises(ServerError):
        tfe.create_workspace("faulty", "never-made")
    rows = faulty.request_log(since=mark)
    sequence = [r["method"] for r in rows]
    assert sequence.count("POST") == 3  # at most three attempts in all
    for i, method in enumerate(sequence):
        if method == "POST" and i > 0:
            assert sequence[i - 1] == "GET", sequence  # each new attempt follows a read-back that found nothing
    assert sequence[-1] == "GET" and tfe.find_workspace("faulty", "never-made") is None


def test_listing_2000_workspaces_takes_20_requests(fresh_sandbox: Sandbox):
    store = fresh_sandbox.store
    owner = store.find_user("operator")
    store.create_organization("big", "ops@acme.example", owner)
    for i in range(2000):
        store.create_workspace("big", {"name": f"service-{i:04d}"}, owner)
    tfe = TfeClient(_settings(fresh_sandbox), read_only=True)
    mark = fresh_sandbox.log_mark()
    names = [ws.get("name") for ws in tfe.list_workspaces("big")]
    assert len(names) == 2000 and len(set(names)) == 2000
    listed = fresh_sandbox.request_log(since=mark, path_prefix="/api/v2/organizations/big/workspaces")
    assert len(listed) == 20


def test_inventory_agrees_with_pytfe(seeded_sandbox: Sandbox, new_org: str):
    s = _settings(seeded_sandbox)
    legacy, tfe = LegacyClient(s), TfeClient(s)
    # one workspace that exists without state, one with this environment's state, one with another lineage
    tfe.create_workspace(new_org, "network-prod")
    holder = tfe.create_workspace(new_org, "app-prod")
    tfe.lock_workspace(holder.id)
    tfe.push_state(holder.id, legacy.get_state("acme-legacy", "app-prod").data)
    other = tfe.create_workspace(new_org, "dns-prod")
    tfe.lock_workspace(other.id)
    tfe.push_state(other.id, legacy.get_state("acme-legacy", "web.prod").data)

    envs = ["network-prod", "app-prod", "dns-prod", "web.prod", "monitoring-prod"]
    rows = operator_rows(seeded_sandbox, mapping.propose("acme-legacy", envs, new_org))  # the facts the UI shows
    frame = inventory.mapping_frame(rows, inventory.legacy_environments(legacy, "acme-legacy", rows), tfe)

    config = TFEConfig(address=seeded_sandbox.tfe_address, token=seeded_sandbox.operator_token,
                       ca_bundle=seeded_sandbox.ca_file)
    with TFEClient(config) as sdk:
        by_name = {ws.name: ws for ws in sdk.workspaces.list(new_org)}
        has_state = {}
        for name, ws in by_name.items():
            try:
                has_state[name] = sdk.state_versions.read_current(ws.id).serial is not None
            except NotFound:
                has_state[name] = False
    for row in frame.to_dict("records"):
        name = row["workspace"].split("/", 1)[1]
        assert row["workspace_exists"] == (name in by_name), row
        assert row["workspace_has_state"] == has_state.get(name, False), row
    verdicts = dict(zip(frame["environment"], frame["ready"]))
    assert verdicts["acme-legacy/network-prod"] and verdicts["acme-legacy/app-prod"]
    assert verdicts["acme-legacy/monitoring-prod"]  # no workspace yet, every fact known
    assert not verdicts["acme-legacy/dns-prod"]  # holds another environment's lineage
    assert frame.set_index("environment").loc["acme-legacy/web.prod", "workspace"] == f"{new_org}/web-prod"


def test_a_workspace_read_carries_its_current_state_version(seeded_sandbox: Sandbox, new_org: str):
    """`include=current-state-version`: one request answers "which workspace" and "which state" together."""
    tfe = TfeClient(_settings(seeded_sandbox))
    ws = tfe.create_workspace(new_org, "carries-state")
    tfe.lock_workspace(ws.id)
    mark = seeded_sandbox.log_mark()
    empty = tfe.find_workspace(new_org, "carries-state")
    assert tfe.state_version_of(empty) is None  # the relationship is null: no second request
    assert len(seeded_sandbox.request_log(since=mark)) == 1
    state = LegacyClient(_settings(seeded_sandbox)).get_state("acme-legacy", "network-prod")
    pushed = tfe.push_state(ws.id, state.data)
    mark = seeded_sandbox.log_mark()
    found = tfe.find_workspace(new_org, "carries-state")
    current = tfe.state_version_of(found)
    # no md5 in a state-version answer (as on the real API): identity comes from the downloaded bytes
    assert current.id == pushed.id and current.get("md5") is None and current.get("serial") == state.serial
    assert len(seeded_sandbox.request_log(since=mark)) == 1
    assert tfe.download_state(current) == state.data
    # A workspace answer without the include (a create's or PATCH's) falls back to the endpoint.
    patched = tfe.update_workspace(ws.id, {"description": "x"})
    mark = seeded_sandbox.log_mark()
    assert tfe.state_version_of(patched).id == pushed.id
    assert [r["path"] for r in seeded_sandbox.request_log(since=mark)] == [
        f"/api/v2/workspaces/{ws.id}/current-state-version"]


def test_one_environments_preflight_asks_the_new_host_once(seeded_sandbox: Sandbox, new_org: str):
    """The workspace lookup proves the token and carries the API version and rate limit: no ping as well."""
    s = _settings(seeded_sandbox)
    legacy, tfe = LegacyClient(s, read_only=True), TfeClient(s, read_only=True)
    mark = seeded_sandbox.log_mark()
    checks = inventory.preflight_checks(s, "acme-legacy", legacy=legacy, tfe=tfe, legacy_env="web.prod",
                                        workspace=(new_org, "web-prod")).set_index("check")
    assert checks["ok"].all(), checks
    assert "API 2." in checks.loc["new API", "detail"] and "requests/s" in checks.loc["rate limit", "detail"]
    assert [r["path"] for r in seeded_sandbox.request_log(since=mark) if r["path"].startswith("/api/v2/")] == [
        f"/api/v2/organizations/{new_org}/workspaces/web-prod"]


def test_a_host_that_announces_its_limit_only_on_ping_is_pinged(fresh_sandbox: Sandbox):
    tfe = TfeClient(_settings(fresh_sandbox), read_only=True)
    tfe.session.last_headers = {"TFP-API-Version": "2.5"}  # an answer without X-RateLimit-Limit
    mark = fresh_sandbox.log_mark()
    facts = tfe.about()
    assert [r["path"] for r in fresh_sandbox.request_log(since=mark)] == ["/api/v2/ping"]
    assert facts["api_version"] >= "2.5" and facts["rate_limit"] > 0
    fresh_sandbox.set_rate_limit(None)  # now no answer announces a limit: pinged, and the preflight says so
    mark = fresh_sandbox.log_mark()
    checks = inventory.preflight_checks(_settings(fresh_sandbox), "acme-legacy", legacy_env="web.prod",
                                        workspace=("nobody", "web-prod")).set_index("check")
    assert not checks.loc["rate limit", "ok"] and "no rate limit" in checks.loc["rate limit", "detail"]
    assert checks.loc["new API token", "ok"]
    assert [r["path"] for r in fresh_sandbox.request_log(since=mark) if r["path"].startswith("/api/v2/")] == [
        "/api/v2/organizations/nobody/workspaces/web-prod", "/api/v2/ping"]


def test_a_state_pushed_without_read_back_is_the_workspaces_current_one(seeded_sandbox: Sandbox, new_org: str):
    tfe = TfeClient(_settings(seeded_sandbox))
    ws = tfe.lock_workspace(tfe.create_workspace(new_org, "no-read-back").id)
    state = LegacyClient(_settings(seeded_sandbox)).get_state("acme-legacy", "web.prod")
    mark = seeded_sandbox.log_mark()
    sv = tfe.push_state(ws.id, state.data, read_back=False)
    assert [r["method"] for r in seeded_sandbox.request_log(since=mark)] == ["POST", "PUT"]
    assert sv.get("md5") is None and sv.get("serial") == state.serial  # no md5 in an answer, as on real TFE
    tfe.wait_finalized(sv)  # the host finalizes the upload asynchronously
    current = tfe.state_version_of(tfe.find_workspace(new_org, "no-read-back", fresh=True))
    assert current.id == sv.id and tfe.download_state(current) == state.data
