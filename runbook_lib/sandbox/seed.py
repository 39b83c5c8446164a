"""Seed data: the users every sandbox has, and a realistic legacy estate built with real Terraform 0.11.11.

Always present (`bootstrap`, also in an unseeded sandbox):

| what | name | notes |
|---|---|---|
| user | `operator` (operator@acme.example) | token in `ATLAS_TOKEN` and `TFE_TOKEN`; member (admin) of `acme-legacy` |
| user | `outsider` (outsider@other.example) | token in `SANDBOX_OUTSIDER_TOKEN`; sees none of the operator's objects |
| legacy org | `acme-legacy` (`SANDBOX_LEGACY_ORG`) | empty until seeded |
| legacy org | `outsider-legacy` | env `private-env` with a small synthetic state; foreign to the operator |
| new org | `outsider-corp` | owned by `outsider`; workspace `payments-prod` with one state version |

The operator owns no new organization at first: the runbook's step 1 creates one.

`seed_estate(n)` adds `n` environments to `acme-legacy`, taking `ENVIRONMENTS` in order and then
plain `service-NN-prod` ones. Each state is real: Terraform 0.11.11 applied the configuration with the
bundled `null` provider through the `atlas` backend against this sandbox (so it arrived by the real
PUT). Configurations live in bare git repositories under `<data>/git/acme-legacy/<repo>.git`
(`SANDBOX_GIT_ROOT`), branch `master` unless noted. With `n >= 6` every special case exists:

| # | environment | repo (branch) : working dir | backend block in git | special case |
|---|---|---|---|---|
| 0 | `network-prod` | `infrastructure` : `network/prod` | yes | monorepo; outputs `vpc_id` read by `app-prod`; env var |
| 1 | `web.prod` | `web` : `` | no (step 3.b adds it) | period in the name (invalid workspace name) |
| 2 | `app-staging` | `app` (`staging`) : `` | yes | a run in progress (status `planning`) |
| 3 | `db-prod` | `infrastructure` : `database/prod` | yes | locked (by `operator`, reason "change freeze"); monorepo; sensitive `db_password` |
| 4 | `app-prod` | `app` (`master`) : `` | yes | reads `network-prod` through `terraform_remote_state` (atlas) |
| 5 | `dns-prod` | `dns` : `` | no | sensitive variables (terraform `dns_api_key`, env `DNS_PROVIDER_TOKEN`) |
| 6 | `monitoring-prod` | `infrastructure` : `monitoring/prod` | yes | plain (monorepo) |
| 7 | `cache-staging` | `cache` : `` | no | plain |
| 8 | `queue-prod` | `queue` : `` | yes | plain |
| 9 | `search-staging` | `search` (`staging`) : `` | yes | plain |
| 10+ | `service-NN-prod` | `service-NN` : `` | alternating | plain |

Legacy teams (sandbox-defined: the legacy product kept them in its UI) give environments their access:

| team | members | access |
|---|---|---|
| `platform` | operator, alice | admin on `network-prod`, `db-prod`, `monitoring-prod` |
| `developers` | alice, bob | write on every other environment (`web.prod`, `app-staging`, `app-prod`, ...) |
| `auditors` | carol, dave | read on `network-prod`, `app-prod`, `dns-prod` |

So `network-prod` and `app-prod` have two teams with different levels. `alice`, `bob` and `carol` are users
of the new product too (accounts, no token); `dave` is an account of the legacy product only, so the
`auditors` team has a member the new organization cannot have until dave signs up.

Every environment has Terraform version 0.11.11, variables (`environment` at least), one
configuration version (metadata: git_branch, remote_type, remote_slug, commit_sha) and one `applied` run with the commit it ran.
Git history uses fixed author dates, so commit SHAs are the same in every seeded sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib import terraform
from runbook_lib.errors import TerraformError
from runbook_lib.sandbox.store import Store, md5_hex
from runbook_lib.sandbox.vcs import legacy_ingress_metadata

log = logging.getLogger("runbook_lib.sandbox.seed")

LEGACY_ORG = "acme-legacy"
OPERATOR = ("operator", "operator@acme.example")
OUTSIDER = ("outsider", "outsider@other.example")
OUTSIDER_LEGACY_ORG = "outsider-legacy"
OUTSIDER_ORG = "outsider-corp"
OUTSIDER_WORKSPACE = "payments-prod"
GIT_AUTHOR = {"GIT_AUTHOR_NAME": "Acme Platform Team", "GIT_AUTHOR_EMAIL": "platform@acme.example",
              "GIT_COMMITTER_NAME": "Acme Platform Team", "GIT_COMMITTER_EMAIL": "platform@acme.example",
              "GIT_AUTHOR_DATE": "2018-03-01T10:00:00+0000", "GIT_COMMITTER_DATE": "2018-03-01T10:00:00+0000"}
PARALLEL_APPLIES = 2
#: Users of the new product besides the operator (accounts only: they hold no token).
TEAM_USERS = (("alice", "alice@acme.example"), ("bob", "bob@acme.example"), ("carol", "carol@acme.example"))
#: Legacy teams and their members; `dave` has no account on the new product.
LEGACY_TEAMS = {"platform": ("operator", "alice"), "developers": ("alice", "bob"), "auditors": ("carol", "dave")}
#: Which teams have which access on which environment (others: `developers` write, like service-NN-prod).
ENVIRONMENT_TEAMS = {
    "network-prod": (("platform", "admin"), ("auditors", "read")),
    "db-prod": (("platform", "admin"),),
    "monitoring-prod": (("platform", "admin"),),
    "app-prod": (("developers", "write"), ("auditors", "read")),
    "dns-prod": (("auditors", "read"),),
}
DEFAULT_TEAMS = (("developers", "write"),)


@dataclass(frozen=True)
class Var:
    """A variable of a legacy environment."""

    key: str
    value: str
    category: str = "terraform"
    sensitive: bool = False
    hcl: bool = False


@dataclass(frozen=True)
class EnvSpec:
    """One seeded legacy environment (see the module docstring's table)."""

    name: str
    repo: str
    template: str
    branch: str = "master"
    working_directory: str = ""
    backend_in_git: bool = True
    variables: tuple[Var, ...] = ()
    locked: bool = False
    run_in_progress: bool = False
    reads: str | None = None
    special: str = "plain"

    @property
    def vcs(self) -> dict[str, str]:
        """The VCS link as the legacy API shows it."""
        return {"repo": f"{LEGACY_ORG}/{self.repo}", "branch": self.branch,
                "working_directory": self.working_directory}


ENVIRONMENTS: tuple[EnvSpec, ...] = (
    EnvSpec("network-prod", "infrastructure", "network", working_directory="network/prod",
            variables=(Var("environment", "production"), Var("cidr_block", "10.20.0.0/16"),
                       Var("AWS_DEFAULT_REGION", "us-east-1", category="env")),
            special="monorepo working directory; remote-state source"),
    EnvSpec("web.prod", "web", "servers", backend_in_git=False,
            variables=(Var("environment", "production"), Var("instance_count", "3")),
            special="period in the name"),
    EnvSpec("app-staging", "app", "servers", branch="staging",
            variables=(Var("environment", "staging"), Var("instance_count", "1")),
            run_in_progress=True, special="run in progress"),
    EnvSpec("db-prod", "infrastructure", "database", working_directory="database/prod",
            variables=(Var("environment", "production"), Var("db_password", "s3cr3t-db-pass", sensitive=True)),
            locked=True, special="locked; monorepo working directory"),
    EnvSpec("app-prod", "app", "reader", variables=(Var("environment", "production"),),
            reads="network-prod", special="reads network-prod via terraform_remote_state"),
    EnvSpec("dns-prod", "dns", "dns", backend_in_git=False,
            variables=(Var("environment", "production"), Var("zone", "acme.example"),
                       Var("dns_api_key", "dns-api-key-0123456789", sensitive=True),
                       Var("DNS_PROVIDER_TOKEN", "dns-provider-token-abcdef", category="env", sensitive=True)),
            special="sensitive variables"),
    EnvSpec("monitoring-prod", "infrastructure", "servers", working_directory="monitoring/prod",
            variables=(Var("environment", "production"),)),
    EnvSpec("cache-staging", "cache", "servers", backend_in_git=False,
            variables=(Var("environment", "staging"), Var("instance_count", "2"))),
    EnvSpec("queue-prod", "queue", "servers", variables=(Var("environment", "production"),)),
    EnvSpec("search-staging", "search", "servers", branch="staging", variables=(Var("environment", "staging"),)),
)


def environment_specs(n: int) -> list[EnvSpec]:
    """The first `n` seeded environments (the table above, then `service-NN-prod`)."""
    specs = list(ENVIRONMENTS[:n])
    for i in range(len(ENVIRONMENTS), n):
        specs.append(EnvSpec(f"service-{i:02d}-prod", f"service-{i:02d}", "servers",
                             backend_in_git=i % 2 == 0, variables=(Var("environment", "production"),)))
    return specs


# --- configurations (Terraform 0.11 syntax) ---------------------------------------------------------

def _variable(name: str, default: str | None = None) -> str:
    return f'variable "{name}" {{}}\n' if default is None else f'variable "{name}" {{\n  default = {default}\n}}\n'


def _null_resource(name: str, triggers: dict[str, str], count: str | None = None) -> str:
    """A `null_resource` in 0.11 syntax (a `triggers` block, not 1.x's argument), aligned as `terraform fmt`."""
    width = max(len(key) for key in triggers)
    lines = [f'resource "null_resource" "{name}" {{']
    if count is not None:
        lines += [f"  count = {count}", ""]
    lines += ["  triggers {", *(f"    {key.ljust(width)} = {value}" for key, value in triggers.items()), "  }", "}"]
    return "\n".join(lines) + "\n"


def _output(name: str, value: str) -> str:
    return f'output "{name}" {{\n  value = {value}\n}}\n'


def _ids(resource: str) -> str:
    """The ids of every instance of a counted null resource, as a 0.11 list."""
    return f'["${{null_resource.{resource}.*.id}}"]'


_ENVIRONMENT = _variable("environment")
_ENV_TRIGGER = '"${var.environment}"'
# One configuration per EnvSpec.template: blocks in file order, one blank line between them. The reader's
# `%(org)s` is filled with the legacy organization (configuration_files).
_TEMPLATES = {name: "\n".join(blocks) for name, blocks in {
    "servers": (
        _ENVIRONMENT,
        _variable("instance_count", "2"),
        _null_resource("server", {"environment": _ENV_TRIGGER, "index": '"${count.index}"'},
                       count='"${var.instance_count}"'),
        _output("server_ids", _ids("server")),
    ),
    "network": (
        _ENVIRONMENT,
        _variable("cidr_block", '"10.0.0.0/16"'),
        _null_resource("vpc", {"cidr": '"${var.cidr_block}"', "environment": _ENV_TRIGGER}),
        _null_resource("subnet", {"vpc": '"${null_resource.vpc.id}"', "index": '"${count.index}"'}, count="3"),
        _output("vpc_id", '"${null_resource.vpc.id}"'),
        _output("subnet_ids", _ids("subnet")),
    ),
    "database": (
        _ENVIRONMENT,
        _variable("db_password"),
        _null_resource("database", {"environment": _ENV_TRIGGER, "password_sha": '"${sha256(var.db_password)}"'}),
        _output("database_id", '"${null_resource.database.id}"'),
    ),
    "reader": (
        _ENVIRONMENT,
        'data "terraform_remote_state" "network" {\n  backend = "atlas"\n\n'
        '  config {\n    name = "%(org)s/network-prod"\n  }\n}\n',
        _null_resource("app", {"environment": _ENV_TRIGGER,
                               "vpc_id": '"${data.terraform_remote_state.network.vpc_id}"'}, count="2"),
        _output("app_ids", _ids("app")),
    ),
    "dns": (
        _ENVIRONMENT,
        _variable("zone"),
        _variable("dns_api_key"),
        _null_resource("zone", {"zone": '"${var.zone}"', "key_sha": '"${sha256(var.dns_api_key)}"'}),
        _null_resource("record", {"zone": '"${null_resource.zone.id}"', "name": '"host-${count.index}.${var.zone}"'},
                       count="3"),
    ),
}.items()}

def backend_block(org: str, name: str) -> str:
    """The `atlas` backend block as the upgrade guide's step 3.b shows it (no address: ATLAS_ADDRESS)."""
    return f'terraform {{\n  backend "atlas" {{\n    name = "{org}/{name}"\n  }}\n}}\n'


def configuration_files(spec: EnvSpec) -> dict[str, str]:
    """The files of an environment's configuration, relative to its working directory."""
    files = {"main.tf": _TEMPLATES[spec.template] % {"org": LEGACY_ORG} if spec.template == "reader"
             else _TEMPLATES[spec.template]}
    if spec.backend_in_git:
        files["backend.tf"] = backend_block(LEGACY_ORG, spec.name)
    return files


# --- bootstrap --------------------------------------------------------------------------------------

def bootstrap(store: Store) -> dict[str, str]:
    """Create the users, tokens and organizations every sandbox has (idempotent).

    Returns:
        {"operator": token, "outsider": token}.
    """
    tokens = {}
    with store.tx():
        for username, email in (OPERATOR, OUTSIDER):
            user = store.create_user(username, email)
            tokens[username] = store.token_for(username) or store.create_token(user["id"], f"{username}-api-token")
        operator, outsider = store.find_user(OPERATOR[0]), store.find_user(OUTSIDER[0])
        assert operator is not None and outsider is not None
        if not store.legacy_org_exists(LEGACY_ORG):
            store.create_legacy_org(LEGACY_ORG, "platform@acme.example")
            store.add_legacy_member(LEGACY_ORG, operator["id"], "admin")
        if not store.legacy_org_exists(OUTSIDER_LEGACY_ORG):
            store.create_legacy_org(OUTSIDER_LEGACY_ORG, OUTSIDER[1])
            store.add_legacy_member(OUTSIDER_LEGACY_ORG, outsider["id"], "admin")
            env = store.create_environment(OUTSIDER_LEGACY_ORG, "private-env",
                                           vcs={"repo": f"{OUTSIDER_LEGACY_ORG}/private", "branch": "master",
                                                "working_directory": ""})
            store.put_legacy_state(env["id"], _synthetic_state(3))
        if not store.org_name_taken(OUTSIDER_ORG):
            store.create_organization(OUTSIDER_ORG, OUTSIDER[1], outsider)
            ws = store.create_workspace(OUTSIDER_ORG, {"name": OUTSIDER_WORKSPACE, "execution-mode": "local",
                                                       "terraform-version": "1.15.5"}, outsider)
            body = _synthetic_state(4)
            store.create_state_version(ws, outsider, serial=1, md5=md5_hex(body), lineage=None, state=body,
                                       force=True, require_lock=False)
    return tokens


def _synthetic_state(version: int) -> bytes:
    """A small valid empty state (format 3 or 4) for the outsider's objects, which only need to exist."""
    if version == 3:
        doc: dict[str, Any] = {"version": 3, "terraform_version": "0.11.11", "serial": 1,
                               "lineage": str(uuid.uuid4()),
                               "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]}
    else:
        doc = {"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": str(uuid.uuid4()),
               "outputs": {}, "resources": [], "check_results": None}
    return (json.dumps(doc, indent=2) + "\n").encode()


# --- git --------------------------------------------------------------------------------------------

def _git(args: list[str], cwd: Path) -> str:
    env = {**os.environ, **GIT_AUTHOR, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    env.pop("GIT_DIR", None)
    proc = subprocess.run(["git", "-c", "init.defaultBranch=master", "-c", "commit.gpgsign=false", *args],
                          cwd=str(cwd), env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TerraformError(f"git {args[0]} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def build_repositories(specs: list[EnvSpec], git_root: Path, work: Path) -> dict[tuple[str, str], str]:
    """Create one bare repository per repo name (branches as the specs need), the monorepo included.

    Returns:
        (repo, branch) -> commit SHA.
    """
    layout: dict[str, dict[str, dict[str, str]]] = {}
    for spec in specs:
        branches = layout.setdefault(spec.repo, {})
        files = branches.setdefault(spec.branch, {"README.md": f"# {spec.repo}\n\nManaged by the Acme platform team.\n"})
        prefix = f"{spec.working_directory}/" if spec.working_directory else ""
        for name, text in configuration_files(spec).items():
            files[prefix + name] = text
    shas: dict[tuple[str, str], str] = {}
    for repo, branches in layout.items():
        tree = work / "_repos" / repo
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)
        _git(["init", "-q"], tree)
        ordered = sorted(branches, key=lambda b: (b != "master", b))
        if ordered[0] != "master":
            _git(["checkout", "-q", "-b", ordered[0]], tree)
        for i, branch in enumerate(ordered):
            if i > 0:
                _git(["checkout", "-q", "-b", branch], tree)
            for path in list(tree.rglob("*")):
                if path.is_file() and ".git" not in path.relative_to(tree).parts:
                    path.unlink()
            for rel, text in branches[branch].items():
                target = tree / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            _git(["add", "-A"], tree)
            _git(["commit", "-q", "-m", f"Configuration for {branch}"], tree)
            shas[(repo, branch)] = _git(["rev-parse", "HEAD"], tree)
        bare = git_root / LEGACY_ORG / f"{repo}.git"
        if bare.exists():
            shutil.rmtree(bare)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git(["clone", "-q", "--bare", str(tree), str(bare)], work)
        if "master" not in branches:
            _git(["symbolic-ref", "HEAD", f"refs/heads/{ordered[0]}"], bare)
    return shas


# --- terraform applies --------------------------------------------------------------------------------

@dataclass
class SeedResult:
    """What `seed_estate` did."""

    environments: list[str] = field(default_factory=list)
    seconds: float = 0.0
    apply_seconds: dict[str, float] = field(default_factory=dict)


def _apply(spec: EnvSpec, work: Path, plugin_dir: str, address: str, token: str, ca_file: str | None) -> float:
    started = time.perf_counter()
    cwd = work / "envs" / spec.name
    if cwd.exists():
        shutil.rmtree(cwd)
    cwd.mkdir(parents=True)
    for name, text in configuration_files(spec).items():
        (cwd / name).write_text(text)
    if not spec.backend_in_git:
        # Not committed: in git this environment has no backend block (step 3.b of the guide adds it).
        (cwd / "seed_backend.tf").write_text(backend_block(LEGACY_ORG, spec.name))
    env = {"ATLAS_ADDRESS": address, "ATLAS_TOKEN": token, "TF_INPUT": "0"}
    if ca_file:
        env.update(SSL_CERT_FILE=ca_file, ATLAS_CAFILE=ca_file)
    for var in spec.variables:
        env[f"TF_VAR_{var.key}" if var.category == "terraform" else var.key] = var.value
    binary = terraform.terraform_011()
    terraform.run(binary, ["init", "-input=false", f"-plugin-dir={plugin_dir}"], cwd=cwd, env=env, timeout=120)
    terraform.run(binary, ["apply", "-auto-approve", "-input=false"], cwd=cwd, env=env, timeout=180)
    return time.perf_counter() - started


def seed_estate(store: Store, n: int, *, data_dir: Path, address: str, ca_file: str | None = None) -> SeedResult:
    """Build `n` legacy environments in `acme-legacy` with real states, git repos, variables and runs.

    The server at `address` must be serving this store: Terraform 0.11.11 writes each state through it.

    Args:
        store: the sandbox store (already bootstrapped).
        n: number of environments.
        data_dir: the sandbox data directory (git repos go to `<data>/git`, scratch to `<data>/seed-work`).
        address: the sandbox's base URL (ATLAS_ADDRESS for the applies).
        ca_file: CA certificate when the sandbox serves HTTPS.

    Returns:
        SeedResult with the environment names and timings.

    Raises:
        TerraformError: a terraform or git command failed.
    """
    started = time.perf_counter()
    result = SeedResult()
    specs = environment_specs(n)
    if not specs:
        return result
    operator = store.find_user(OPERATOR[0])
    token = store.token_for(OPERATOR[0])
    assert operator is not None and token is not None, "bootstrap() must run first"
    work = data_dir / "seed-work"
    git_root = data_dir / "git"
    shas = build_repositories(specs, git_root, work)
    plugin_dir = terraform.plugin_dir_011(data_dir / "plugins-0.11")
    sources = [s for s in specs if not s.reads]
    readers = [s for s in specs if s.reads]
    with ThreadPoolExecutor(max_workers=PARALLEL_APPLIES) as pool:
        for batch in (sources, readers):
            futures = {s.name: pool.submit(_apply, s, work, plugin_dir, address, token, ca_file) for s in batch}
            for name, future in futures.items():
                result.apply_seconds[name] = round(future.result(), 2)
    for spec in specs:
        _record_environment(store, spec, operator, shas[(spec.repo, spec.branch)])
        result.environments.append(spec.name)
    shutil.rmtree(work, ignore_errors=True)
    result.seconds = round(time.perf_counter() - started, 2)
    store.set_meta("seeded_n", str(n))
    store.set_meta("seed_seconds", str(result.seconds))
    return result


def _record_environment(store: Store, spec: EnvSpec, operator: dict[str, Any], sha: str) -> None:
    """After the apply created the environment through the state PUT, add what the legacy UI held."""
    env = store.find_environment(LEGACY_ORG, spec.name)
    if env is None:
        raise TerraformError(f"seeding {spec.name}: terraform apply did not write a state to the sandbox")
    with store.tx():
        store.set_environment_vcs(env["id"], spec.vcs)
        for var in spec.variables:
            store.set_legacy_var(env["id"], var.key, var.value, category=var.category, hcl=var.hcl,
                                 sensitive=var.sensitive)
        store.create_legacy_config_version(env["id"], legacy_ingress_metadata(f"{LEGACY_ORG}/{spec.repo}",
                                                                              spec.branch, sha))
        store.create_legacy_run(env["id"], status="applied", source="vcs", commit_sha=sha,
                                message=f"Merge to {spec.branch}", has_changes=True,
                                created_by=operator["username"], created_at="2018-03-01T10:05:00.000Z")
        if spec.run_in_progress:
            store.create_legacy_run(env["id"], status="planning", source="vcs", commit_sha=sha,
                                    message="Scale staging", has_changes=False, created_by=operator["username"])
        for user, email in TEAM_USERS:
            store.create_user(user, email)
        for team_name, access in ENVIRONMENT_TEAMS.get(spec.name, DEFAULT_TEAMS):
            team = store.create_legacy_team(LEGACY_ORG, team_name, LEGACY_TEAMS[team_name])
            store.grant_legacy_access(team["id"], env["id"], access)
        if spec.locked:
            store.lock_environment(store.find_environment(LEGACY_ORG, spec.name) or env, operator,
                                   "change freeze: database maintenance")
