"""A rehearsal against the sandbox: what it passes to the runbook, and the operator's part, played.

A real migration names its VCS provider in the step-1 parameters (`vcs_service_provider`,
`vcs_http_url`, ...) and keeps the provider's access token in `$VCS_OAUTH_TOKEN`. The sandbox's
"provider" is its folder of bare git repositories; these helpers give the matching values, so the
demo, the tests and an operator rehearsing by hand use the same ones.

The rest plays the operator, for the demo and the tests only (the runbook itself never acts in the legacy UI):
writing into the mapping the facts the legacy API does not show (`operator_rows`, from the seed, which the
operator of this estate knows), clicking in the sandbox's legacy UI (`LegacyUi`: the same form posts a person's
browser sends), and answering a batch's WAITING steps (`run_with_operator`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

NEW_ORG = "acme"
OPERATOR_EMAIL = "operator@acme.example"
VCS_TOKEN_VAR = "VCS_OAUTH_TOKEN"


def batch_parameters(env: Mapping[str, str]) -> dict[str, str]:
    """Notebook parameters for every step of a rehearsal batch (no secrets: names and URLs only).

    Args:
        env: the sandbox's `sandbox.env` values.
    """
    git_url = "file://" + env["SANDBOX_GIT_ROOT"]
    return {"organization_email": OPERATOR_EMAIL, "vcs_service_provider": "gitlab_community_edition",
            "vcs_http_url": git_url, "vcs_api_url": git_url, "vcs_token_var": VCS_TOKEN_VAR}


def batch_environ(env: Mapping[str, str]) -> dict[str, str]:
    """Environment variables for a rehearsal batch: the sandbox's, plus a VCS token and the git base.

    The sandbox accepts any VCS token value; a real migration puts the provider's token in
    `$VCS_OAUTH_TOKEN` instead.
    """
    values = dict(env)
    values.setdefault(VCS_TOKEN_VAR, "sandbox-vcs-token")
    values.setdefault("TFE_RUNBOOK_GIT_BASE", env["SANDBOX_GIT_ROOT"])
    return values


class LegacyUi:
    """The sandbox's legacy web UI driven as a person's browser would: sign in, open a page, submit its form.

    Args:
        address: the legacy host (`ATLAS_ADDRESS`).
        username, password: the sandbox signs users in with their API token as the password.
        ca_file: the sandbox's CA when it serves HTTPS.
    """

    def __init__(self, address: str, username: str, password: str, ca_file: str | None = None) -> None:
        import requests

        self.address = address.rstrip("/")
        self.http = requests.Session()
        # requests lets REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) from the environment override `verify`: a shell whose
        # bundle names the system CAs would refuse the sandbox's certificate. The sandbox is local: no proxies either.
        self.http.trust_env = False
        self.http.verify = ca_file or True
        self._credentials = {"username": username, "password": password, "next": "/"}
        self._sign_in()

    def _sign_in(self) -> None:
        answer = self.http.post(f"{self.address}/login", data=self._credentials, allow_redirects=False, timeout=30)
        if answer.status_code != 303:
            raise RuntimeError(f"signing in to the legacy UI as {self._credentials['username']} failed "
                               f"({answer.status_code})")

    @classmethod
    def for_sandbox(cls, sandbox: Any) -> "LegacyUi":
        """Signed in as the sandbox's operator."""
        return cls(sandbox.legacy_address, "operator", sandbox.operator_token, sandbox.ca_file)

    def page(self, org: str, env: str, page: str) -> str:
        """The HTML of an environment's page (settings, integrations, variables, changes/runs).

        A session the host forgot (it restarted) sends the browser to the sign-in page: sign in again, once.
        """
        for attempt in (1, 2):
            answer = self.http.get(self._url(org, env, page), allow_redirects=False, timeout=30)
            if answer.is_redirect and urlsplit(answer.headers.get("Location", "")).path == "/login" and attempt == 1:
                self._sign_in()
                continue
            answer.raise_for_status()
            if answer.is_redirect:
                raise RuntimeError(f"the {page} page of {org}/{env} redirects to {answer.headers.get('Location')}")
            break
        return answer.text

    def _url(self, org: str, env: str, page: str) -> str:
        from urllib.parse import quote

        return f"{self.address}/terraform/{quote(org, safe='')}/environments/{quote(env, safe='')}/{page}"

    def _submit(self, org: str, env: str, page: str, action: str, **fields: str) -> str:
        """Open `page`, take its form's authenticity token, post `action`; returns the flash message."""
        import re
        from urllib.parse import parse_qs

        found = re.search(r"name='authenticity_token' value='([^']+)'", self.page(org, env, page))
        if not found:
            raise RuntimeError(f"no form on the {page} page of {org}/{env}")
        answer = self.http.post(self._url(org, env, action), data={"authenticity_token": found.group(1), **fields},
                                allow_redirects=False, timeout=30)
        if answer.status_code != 303:
            raise RuntimeError(f"{action} on {org}/{env} answered {answer.status_code}: {answer.text[:200]}")
        return (parse_qs(urlsplit(answer.headers.get("Location", "")).query).get("flash") or [""])[0]

    def unlink(self, org: str, env: str) -> str:
        """Integrations > Version Control Integration > Unlink."""
        return self._submit(org, env, "integrations", "integrations/unlink")

    def link(self, org: str, env: str, repo: str, branch: str = "", working_directory: str = "") -> str:
        """Integrations > link a repository (the way back after a failed step 5)."""
        return self._submit(org, env, "integrations", "integrations/link", repo=repo, branch=branch,
                            working_directory=working_directory)

    def lock(self, org: str, env: str, reason: str = "") -> str:
        """Settings > Environment locking > Lock."""
        return self._submit(org, env, "settings", "settings/lock", reason=reason)

    def unlock(self, org: str, env: str) -> str:
        """Settings > Environment locking > Unlock."""
        return self._submit(org, env, "settings", "settings/unlock")

    def delete(self, org: str, env: str) -> str:
        """Settings > Delete environment, typing its name."""
        return self._submit(org, env, "settings", "settings/delete", confirm=env)


def operator_rows(sandbox: Any, rows: Iterable[Any]) -> list[Any]:
    """The mapping rows with the facts an operator reads off the legacy UI, for the seeded environments.

    The legacy API does not show an environment's working directory, its sensitive and environment
    variables or its teams; the operator of this estate knows them (here: from the seed's own table), and
    the demo writes them where an operator would, into the mapping. Rows of other environments stay as they are.
    """
    from dataclasses import replace

    from runbook_lib.sandbox import seed

    specs = {f"{sandbox.legacy_org}/{spec.name}": spec for spec in sandbox.seeded_environments()}
    out = []
    for row in rows:
        spec = specs.get(row.legacy_slug)
        if spec is None:
            out.append(row)
            continue
        teams = "; ".join(f"{name}:{access}[{','.join(seed.LEGACY_TEAMS[name])}]"
                          for name, access in seed.ENVIRONMENT_TEAMS.get(spec.name, seed.DEFAULT_TEAMS))
        out.append(replace(row, vcs_repo=f"{sandbox.legacy_org}/{spec.repo}", vcs_branch=spec.branch,
                           working_directory=spec.working_directory,
                           sensitive_variables="; ".join(("env:" if v.category == "env" else "") + v.key
                                                         for v in spec.variables if v.sensitive),
                           env_variables="; ".join(f"{v.key}={v.value}" for v in spec.variables
                                                   if v.category == "env" and not v.sensitive),
                           teams=teams))
    return out


def clear_blockers(sandbox: Any, rows: Iterable[Any]) -> list[str]:
    """Clear what keeps seeded environments from migrating, as an operator would in the legacy UI.

    The legacy API shows neither locks nor runs in progress; the operator checks the UI (guide step 3.a).
    - A legacy lock held by the operator is lifted on the environment's settings page.
    - The seeded legacy run "in progress" never ends by itself: where a real operator waits for it or
      discards it in the legacy UI, the sandbox is told to finish it.
    """
    ui = LegacyUi.for_sandbox(sandbox)
    store = sandbox.store
    done = []
    for row in rows:
        env = store.find_environment(row.legacy_org, row.legacy_env)
        if env is None:
            continue
        if env["locked"]:
            ui.unlock(row.legacy_org, row.legacy_env)
            done.append(f"{row.legacy_slug}: locked by {env['locked_by']}; unlocked in the legacy UI (settings page)")
        run = store.current_legacy_run(env["id"])
        if run is not None:
            store.update_legacy_run(run["id"], status="planned_and_finished")
            done.append(f"{row.legacy_slug}: legacy run {run['id']} in progress; the sandbox finished it "
                        f"(on a real host: wait for it, or discard it in the legacy UI)")
    return done


def sensitive_values(sandbox: Any, rows: Iterable[Any]) -> dict[str, str]:
    """The values of the seeded sensitive variables, each under its workspace's own variable
    (`mapping.secret_variable`: `TFE_RUNBOOK_VAR__<workspace>__<KEY>`).

    An operator takes sensitive values from their own secret store; the sandbox's store is its seed.
    The caller puts them into the environment of the batch (never into a notebook parameter).
    """
    from runbook_lib.mapping import secret_variable

    specs = {f"{sandbox.legacy_org}/{spec.name}": spec for spec in sandbox.seeded_environments()}
    return {secret_variable(row, var.key): var.value for row in rows
            for var in getattr(specs.get(row.legacy_slug), "variables", ()) if var.sensitive}


def act_on_waiting(sandbox: Any, outcomes: Iterable[Any], confirm_file: Path) -> list[str]:
    """Do in the legacy UI what the batch's WAITING steps ask, and say so in the confirm file.

    Step 04 waits for an unlink, step 06 for a deletion (after its final backup). Returns the lines added.
    """
    from runbook_lib.catalog import DELETE_LEGACY_ENVIRONMENT, DISABLE_LEGACY_VCS

    ui = LegacyUi.for_sandbox(sandbox)
    added = []
    for outcome in outcomes:
        if outcome.status != "waiting":
            continue
        org, _, env = outcome.environment.partition("/")
        if outcome.step == DISABLE_LEGACY_VCS:
            ui.unlink(org, env)
            added.append(f"unlink {outcome.environment}")
        elif outcome.step == DELETE_LEGACY_ENVIRONMENT:
            ui.delete(org, env)
            added.append(f"delete {outcome.environment}")
    if added:
        with Path(confirm_file).open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in added))
    return added


def run_with_operator(sandbox: Any, make_runner: Any, confirm_file: Path, *, rounds: int = 4,
                      say: Any = print) -> list[Any]:
    """Run a batch; after each run, act on its WAITING steps in the legacy UI and run it again.

    Args:
        make_runner: called with the confirm file's lines, returns a `BatchRunner` (the same batch id each time,
            so every run resumes the last).
        rounds: at most this many runs (a migration needs three: to step 4, to step 6, to the end).

    Returns:
        Every run's `BatchResult`, in order.
    """
    results = []
    for _ in range(rounds):
        lines = [line.strip() for line in Path(confirm_file).read_text().splitlines()
                 if line.strip() and not line.startswith("#")] if Path(confirm_file).exists() else []
        result = make_runner(lines).run()
        results.append(result)
        added = act_on_waiting(sandbox, result.outcomes, confirm_file)
        if not added:
            break
        say(f"operator, in the legacy UI: {'; '.join(added)} (and in {confirm_file})")
    return results


class OperatorAlongside:
    """An operator working beside a running batch (benchmarks and long rehearsals): unlinks every environment in
    the legacy UI before the batch starts, and deletes each one in the UI as soon as its step 6 has taken the
    final backup (`<batch>/<env>/state/final.json`). The batch then needs the confirm lines (`unlink ...`,
    `delete ...`) and step 6's `wait_for_deletion`, so one run goes through.

    Use as a context manager around the batch's run.
    """

    def __init__(self, sandbox: Any, rows: Iterable[Any], batch_dir: Path, *, poll: float = 0.5) -> None:
        import threading

        self.sandbox, self.rows, self.batch_dir, self.poll = sandbox, list(rows), Path(batch_dir), poll
        self.deleted: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="operator-alongside", daemon=True)

    def __enter__(self) -> "OperatorAlongside":
        ui = LegacyUi.for_sandbox(self.sandbox)
        for row in self.rows:
            ui.unlink(row.legacy_org, row.legacy_env)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None and not exc[0]:
            raise RuntimeError(f"the operator alongside the batch failed: {self.error}") from self.error

    def _watch(self) -> None:
        import time

        import requests

        from runbook_lib.audit import env_dirname

        try:
            ui = LegacyUi.for_sandbox(self.sandbox)
            waiting = {row.legacy_slug: row for row in self.rows}
            failing_since: float | None = None
            while waiting and not self._stop.wait(self.poll):
                for slug, row in list(waiting.items()):
                    if (self.batch_dir / env_dirname(slug) / "state" / "final.json").is_file():
                        try:
                            ui.delete(row.legacy_org, row.legacy_env)
                        except (requests.RequestException, RuntimeError):
                            # The host is away or failing for a moment (a restart): a person tries again, for
                            # a while, then gives up.
                            failing_since = failing_since or time.monotonic()
                            if time.monotonic() - failing_since > 120:
                                raise
                            continue
                        failing_since = None
                        self.deleted.append(slug)
                        del waiting[slug]
        except Exception as exc:  # noqa: BLE001 - kept and raised by __exit__ in the caller's thread
            self.error = exc


def state_outputs(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state's root outputs as name -> value, for version 3 (0.11: the root module's) and 4 alike."""
    if state.get("version") == 3:
        root = next((m for m in state.get("modules") or [] if m.get("path") == ["root"]), {})
        outputs = root.get("outputs") or {}
    else:
        outputs = state.get("outputs") or {}
    return {name: (out or {}).get("value") for name, out in outputs.items()}


def read_back_with_pytfe(sandbox: Any, batch_dir: Any, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A second opinion on a finished batch, from HashiCorp's own Python SDK (`pytfe`), not the runbook's client.

    For every environment of the manifest: the workspace is unlocked; its current state, downloaded by
    pytfe, has the lineage and root outputs of the legacy state the batch backed up at step 3 (the backup
    whose sha256 step 3 recorded); its newest run planned no changes.

    Returns:
        One row per environment with those facts and ``agrees`` (all of them hold).

    Raises:
        ModuleNotFoundError: pytfe is not installed (`pip install '.[test]'` brings it).
    """
    from pytfe import TFEClient, TFEConfig

    from runbook_lib.audit import env_dirname

    rows = []
    config = TFEConfig(address=sandbox.tfe_address, token=sandbox.operator_token, ca_bundle=sandbox.ca_file,
                       max_retries=5)
    with TFEClient(config) as tfe:
        for environment, data in sorted((manifest.get("environments") or {}).items()):
            evidence = data.get("evidence") or {}
            org, _, name = ((evidence.get("workspace") or {}).get("name") or "/").partition("/")
            legacy_sha = (((evidence.get("state") or {}).get("legacy")) or {}).get("sha256")
            backup = next((b for b in (evidence.get("backups") or {}).get("files") or []
                           if b.get("sha256") == legacy_sha), None)
            # a backup's `file` is relative to its environment's folder of the batch
            legacy = (json.loads((Path(batch_dir) / env_dirname(environment) / backup["file"]).read_bytes())
                      if backup else {})
            ws = tfe.workspaces.read(name, organization=org)
            held = json.loads(tfe.state_versions.download(tfe.state_versions.read_current(ws.id).id))
            latest = next(iter(tfe.runs.list(ws.id)), None)
            row = {"environment": environment, "workspace": f"{org}/{name}", "unlocked": ws.locked is False,
                   "lineage": bool(legacy) and held.get("lineage") == legacy.get("lineage"),
                   "outputs": bool(legacy) and state_outputs(held) == state_outputs(legacy),
                   "latest_run": latest.id if latest else None,
                   "no_changes": latest is not None and latest.has_changes is False}
            row["agrees"] = all(row[k] for k in ("unlocked", "lineage", "outputs", "no_changes"))
            rows.append(row)
    return rows
