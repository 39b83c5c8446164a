"""Plan and apply edits of backend blocks and atlas `terraform_remote_state` sources, byte-exactly.

How an edit is made (decisions):
- python-hcl2's parser decides what is there and where (character spans, see `_syntax`); the edit splices
  new text into exactly that span; every byte before and after it is kept, which is then checked.
- The seed's own move (3.d, `--target atlas`) replaces only the value of `name` inside the atlas block:
  comments in the block, `address`, alignment and the rest stay as they were.
- `--target remote` / `--target cloud` replace the whole backend block (comments inside that one block go
  with it) with a block rendered in `terraform fmt` style, at the block's indentation, with the file's line
  endings (CRLF kept) and indent character (tabs kept). A `cloud` block takes the place of the backend
  block inside the same `terraform` block, so `required_version`, `required_providers` etc. stay intact.
  A one-line `terraform { backend "atlas" { ... } }` holding nothing else is re-rendered as a whole.
- The hostname of a `remote`/`cloud` block is `--hostname`, else the host of the atlas block's `address`,
  else the hostname already in a remote/cloud block, else `app.terraform.io` (where atlas's default
  host, atlas.hashicorp.com, went). An atlas block's `address` is never changed.
- Adding a missing atlas block (3.b) writes a new file `legacy_backend.tf` beside the others (Terraform
  merges `terraform` blocks across files) instead of editing an existing `terraform` block: a new file
  cannot damage existing code, and is easy to review and delete. It refuses if that file exists.
- Override files: an override file's backend replaces the root's own (Terraform's merge rule), so the
  override's block is the one edited; the shadowed block is listed in the plan's notes, unchanged.
- Every result is parsed back and must show the intended settings, or nothing is written.
- apply writes `<file>.bak` beside each file first (`.bak.1`, ... if a different backup is there), or,
  with `backup=False`, requires every touched file to be tracked and unmodified in git.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from runbook_lib import git
from runbook_lib.errors import HclError
from runbook_lib.hcl._diff import unified_diff
from runbook_lib.hcl._syntax import line_of, line_start, newline_of
from runbook_lib.hcl.find import (BackendBlock, ConfigFile, RemoteStateRef, backend_blocks, iter_root_dirs,
                                  parse_config_text, remote_state_refs, root_files)

TARGETS = ("atlas", "remote", "cloud")
LEGACY_BACKEND_FILE = "legacy_backend.tf"
DEFAULT_HOSTNAME = "app.terraform.io"
PLAN_COLUMNS = ["root", "file", "start_line", "end_line", "action", "before", "after"]
# Organization and workspace names: what TFE accepts (letters, digits, '-', '_', and '.' in old names).
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def parse_ref(value: str, flag: str = "--from") -> tuple[str, str]:
    """Split `<ORG>/<NAME>` into its two parts.

    Raises:
        HclError: not exactly two non-empty parts of letters, digits, '-', '_' or '.'.
    """
    parts = str(value).split("/")
    if len(parts) != 2 or not all(parts) or not all(set(part) <= _NAME_CHARS for part in parts):
        raise HclError(f"{flag} {value!r} is not of the form <ORGANIZATION>/<NAME> "
                       f"(letters, digits, '-', '_', '.'); pass e.g. {flag} acme/app-prod.")
    return parts[0], parts[1]


@dataclass
class Change:
    """One planned edit: a row of `RewritePlan.frame()`."""

    root: str
    file: str
    start_line: int
    end_line: int
    action: str
    before: str
    after: str


@dataclass
class FileRewrite:
    """The whole new text of one file (`old_text` None for a file to create)."""

    path: Path
    rel: str
    old_text: str | None
    new_text: str


@dataclass
class RewritePlan:
    """What an apply would change; building it writes nothing.

    Attributes:
        root: the directory planned for (a root module, or a repository for remote-state plans).
        message: one sentence saying what the plan does, or why it is empty ("already points at ...").
        changes: one row per edit; `files`: the new text of each touched file; `notes`: things seen but
        deliberately left alone (shadowed blocks, remote-state sources of other environments).
    """

    root: Path
    from_: str
    to: str
    target: str
    message: str
    changes: list[Change] = field(default_factory=list)
    files: list[FileRewrite] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.files

    def frame(self) -> "pandas.DataFrame":  # noqa: F821
        """The planned edits as a DataFrame (columns `PLAN_COLUMNS`); empty when nothing is to change."""
        import pandas as pd

        return pd.DataFrame([vars(change) for change in self.changes], columns=PLAN_COLUMNS)

    def diff(self) -> str:
        """Unified diff of every touched file (a/ = now, b/ = after apply), relative to `root`."""
        chunks = []
        for rewrite in self.files:
            fromfile = f"a/{rewrite.rel}" if rewrite.old_text is not None else "/dev/null"
            lines = unified_diff(rewrite.old_text or "", rewrite.new_text, fromfile, f"b/{rewrite.rel}")
            # A diff line without a trailing newline would run into the next header.
            chunks.append("".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                                  for line in lines))
        return "".join(chunks)


class ApplyResult(list):
    """The paths written by `apply_rewrite` (a list), with `backups` written and `safety` saying how."""

    def __init__(self, written: list[str], backups: list[str], safety: str) -> None:
        super().__init__(written)
        self.backups = backups
        self.safety = safety


# ---------------------------------------------------------------------------------------------------
# Which backend block is in effect
# ---------------------------------------------------------------------------------------------------

def _where(blocks: list[BackendBlock]) -> str:
    return ", ".join(block.where for block in blocks)


def effective_backend(files: list[ConfigFile], root: str) -> tuple[BackendBlock | None, list[BackendBlock]]:
    """The backend/cloud block Terraform would use for a root, and any it shadows.

    Args:
        files: the root's parsed files (`root_files`).
        root: the root's name, for messages.

    Returns:
        (effective block or None, blocks in non-override files shadowed by an override's block).

    Raises:
        HclError: two blocks in non-override files (JSON and HCL both, or twice in one format), or two
            override files both setting the backend.
    """
    blocks = [block for config in files for block in backend_blocks(config)]
    base = [block for block in blocks if not block.file.is_override]
    over = [block for block in blocks if block.file.is_override]
    if len(base) > 1:
        if {block.file.format for block in base} == {"hcl", "json"}:
            raise HclError(f"root {root} configures the backend in both JSON and HCL ({_where(base)}); "
                           f"keep it in one file and delete the other before rewriting.")
        raise HclError(f"root {root} has {len(base)} backend/cloud blocks ({_where(base)}); Terraform allows one, "
                       f"remove the extra block before rewriting.")
    if len(over) > 1:
        raise HclError(f"root {root} sets the backend in {len(over)} override blocks ({_where(over)}); "
                       f"keep one override before rewriting.")
    if over:
        return over[0], base
    return (base[0] if base else None), []


def _pointer(block: BackendBlock) -> tuple[str, str]:
    """(organization, environment-or-workspace) a TFE backend block points at."""
    if block.kind == "backend" and block.type == "atlas":
        name = block.settings.get("name")
        if name is None:
            raise HclError(f"the atlas backend in {block.where} has no name (partial configuration, given by "
                           f"-backend-config?); write name = \"<ORG>/<ENV>\" into the block first.")
        if not name.literal or not isinstance(name.value, str):
            raise HclError(f"the atlas backend name in {block.where} is computed ({name.plain()}); "
                           f"replace it with a literal \"<ORG>/<ENV>\" first.")
        parts = name.value.split("/")
        if len(parts) != 2 or not all(parts):
            raise HclError(f"the atlas backend name {name.value!r} in {block.where} is not <ORG>/<ENV>; "
                           f"correct it by hand first.")
        return parts[0], parts[1]
    if block.kind == "cloud" or block.type == "remote":
        org = block.settings.get("organization")
        workspace = (block.workspaces or {}).get("name")
        if org is None or not org.literal or not isinstance(workspace, str) or not workspace:
            raise HclError(f"the {block.type} block in {block.where} does not name one organization and workspace "
                           f"(workspaces prefix or tags?); rewrite it by hand.")
        return str(org.value), workspace
    raise HclError(f"the backend in {block.where} is {block.type!r}, not a Terraform Enterprise backend "
                   f"(atlas, remote or cloud); this root is not a legacy environment, pick another root.")


def _shape_matches(block: BackendBlock, target: str) -> bool:
    if target == "atlas":
        return block.kind == "backend" and block.type == "atlas"
    if target == "remote":
        return block.kind == "backend" and block.type == "remote"
    return block.kind == "cloud"


def _describe(block: BackendBlock) -> str:
    org, name = _pointer(block)
    label = 'cloud' if block.kind == "cloud" else f'backend "{block.type}"'
    return f"{label} {org}/{name}"


# ---------------------------------------------------------------------------------------------------
# Planning backend rewrites
# ---------------------------------------------------------------------------------------------------

def _select_root(path: Path, from_: str, to: str) -> Path:
    """`path` itself when it is a root module; else the one root below it pointing at `from_` or `to`."""
    if any(entry.endswith((".tf", ".tf.json")) for entry in os.listdir(path)):
        return path
    wanted = {parse_ref(from_), parse_ref(to, "--to")}
    matches = []
    for root_dir in iter_root_dirs(path):
        root = os.path.relpath(root_dir, path)
        effective, _ = effective_backend(root_files(root_dir, path), root)
        try:
            if effective is not None and _pointer(effective) in wanted:
                matches.append(root_dir)
        except HclError:
            continue  # a root that is not a TFE environment cannot be the one asked for
    if len(matches) != 1:
        found = ", ".join(os.path.relpath(m, path) for m in matches) or "none"
        raise HclError(f"{path} is not a root module and {len(matches)} roots below it point at {from_} or {to} "
                       f"({found}); pass the root module directory itself.")
    return matches[0]


def plan_rewrite(root_dir: str | os.PathLike, *, from_: str, to: str, target: str = "atlas",
                 hostname: str | None = None) -> RewritePlan:
    """Plan the rewrite of one root module's backend from a legacy environment to a new workspace.

    Args:
        root_dir: the root module (working directory); a repository holding exactly one root that points
            at `from_` or `to` is accepted too.
        from_: `<LEGACY_ORG>/<ENV>` the backend points at now.
        to: `<NEW_ORG>/<WORKSPACE>` it must point at.
        target: "atlas" (seed step 3.d: change `name`, keep `address`), "remote" (Terraform >= 0.11.13)
            or "cloud" (Terraform >= 1.1).
        hostname: TFE host for remote/cloud (default: the atlas `address` host, else app.terraform.io).

    Returns:
        RewritePlan; empty with message "already points at <to>" when there is nothing to do.

    Raises:
        HclError: one sentence naming the fix, with nothing changed: bad arguments, unparseable file,
            no backend (use `plan_add_legacy_backend`), two backend blocks, JSON and HCL both, a backend
            pointing elsewhere, a name in another organization than `from_`'s, a one-line block that
            cannot be split safely, or a result that does not parse back to the intended settings.
    """
    if target not in TARGETS:
        raise HclError(f"target {target!r} is not one of {', '.join(TARGETS)}; pick one of them.")
    legacy_org, _ = parse_ref(from_)
    new_ref = parse_ref(to, "--to")
    base = Path(root_dir)
    if not base.is_dir():
        raise HclError(f"{base} is not a directory; pass the root module directory.")
    root_path = _select_root(base, from_, to)
    root = os.path.relpath(root_path, base)
    files = root_files(root_path, base)
    effective, shadowed = effective_backend(files, root)
    if effective is None:
        raise HclError(f"root {root} configures no backend; add the legacy one first "
                       f"(tfe-runbook backend add-legacy {root_path} --from {from_}, seed step 3.b).")
    pointer = _pointer(effective)
    plan = RewritePlan(root=root_path, from_=from_, to=to, target=target, message="")
    plan.notes = [f"{block.where} ({_describe_safe(block)}) is shadowed by the override in {effective.where} "
                  f"and left unchanged" for block in shadowed]
    host_ok = (hostname is None or target == "atlas"
               or (effective.setting("hostname") or DEFAULT_HOSTNAME) == hostname)
    if pointer == new_ref and _shape_matches(effective, target) and host_ok:
        plan.message = f"already points at {to} ({_describe(effective)} in {effective.where}); nothing to change."
        return plan
    if pointer == new_ref and _shape_matches(effective, target):
        raise HclError(f"{effective.where} already points at {to} but on host "
                       f"{effective.setting('hostname') or DEFAULT_HOSTNAME}, not {hostname}; fix the hostname by hand.")
    if pointer not in (parse_ref(from_), new_ref):
        if pointer[0] not in (legacy_org, new_ref[0]):
            raise HclError(f"{effective.where} points at {pointer[0]}/{pointer[1]}, in organization {pointer[0]!r}, "
                           f"not the expected legacy organization {legacy_org!r}; check --from.")
        raise HclError(f"{effective.where} points at {pointer[0]}/{pointer[1]}, neither {from_} nor {to}; "
                       f"check --from and --to for this root.")
    if target == "atlas" and not _shape_matches(effective, "atlas"):
        raise HclError(f"{effective.where} already uses {_describe(effective)}; going back to the atlas backend "
                       f"is not supported, use --target {'cloud' if effective.kind == 'cloud' else 'remote'}.")
    if target == "atlas":
        rewrite, change = _edit_atlas_name(effective, to, root)
    else:
        rewrite, change = _replace_block(effective, target, to, hostname, root)
    _verify_backend(files, rewrite, root, target, new_ref, hostname, effective)
    plan.files.append(rewrite)
    plan.changes.append(change)
    plan.message = f"{change.action} in {effective.where}: {change.before} -> {change.after}."
    return plan


def _describe_safe(block: BackendBlock) -> str:
    try:
        return _describe(block)
    except HclError:
        return f"backend {block.type!r}"


def _hcl_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${").replace("%{", "%%{")
    return f'"{escaped}"'


def _splice(config: ConfigFile, start: int, end: int, replacement: str) -> FileRewrite:
    old = config.text
    new = old[:start] + replacement + old[end:]
    # The one promise of this module: outside the span, not one byte differs.
    if new[:start] != old[:start] or new[start + len(replacement):] != old[end:]:
        raise HclError(f"internal error splicing {config.rel}; nothing was written.")
    return FileRewrite(config.path, config.rel, old, new)


def _edit_atlas_name(block: BackendBlock, to: str, root: str) -> tuple[FileRewrite, Change]:
    name = block.settings["name"]
    literal = json.dumps(to, ensure_ascii=False) if block.file.format == "json" else _hcl_string(to)
    rewrite = _splice(block.file, name.start, name.end, literal)
    change = Change(root, block.file.rel, block.start_line, block.end_line, 'set backend "atlas" name',
                    str(name.value), to)
    return rewrite, change


def _hostname_for(block: BackendBlock, hostname: str | None) -> str:
    if hostname:
        return hostname
    address = block.setting("address")
    if isinstance(address, str) and address:
        host = urlsplit(address if "//" in address else f"//{address}").netloc
        if host:
            return host
    existing = block.setting("hostname")
    if isinstance(existing, str) and existing:
        return existing
    return DEFAULT_HOSTNAME


def _indent_unit(text: str, indent: str) -> str:
    # Follow the file: tabs if it indents with tabs, else two spaces as terraform fmt does.
    return "\t" if "\t" in indent or "\n\t" in text else "  "


def _render_hcl(kind: str, hostname: str, org: str, workspace: str, indent: str, unit: str, newline: str) -> str:
    head = 'cloud {' if kind == "cloud" else 'backend "remote" {'
    lines = [head,
             f"{indent}{unit}hostname     = {_hcl_string(hostname)}",
             f"{indent}{unit}organization = {_hcl_string(org)}",
             "",
             f"{indent}{unit}workspaces {{",
             f"{indent}{unit}{unit}name = {_hcl_string(workspace)}",
             f"{indent}{unit}}}",
             f"{indent}}}"]
    return newline.join(lines)


def _render_json(kind: str, hostname: str, org: str, workspace: str, indent: str, unit: str | None,
                 newline: str) -> str:
    settings = {"hostname": hostname, "organization": org, "workspaces": {"name": workspace}}
    value = settings if kind == "cloud" else {"remote": settings}
    key = "cloud" if kind == "cloud" else "backend"
    if unit is None:  # the object sits on one line: stay compact
        return f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
    body = json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", newline + indent)
    return f"{json.dumps(key)}: {body}"


def _replace_block(block: BackendBlock, target: str, to: str, hostname: str | None,
                   root: str) -> tuple[FileRewrite, Change]:
    text = block.file.text
    org, workspace = parse_ref(to, "--to")
    host = _hostname_for(block, hostname)
    newline = newline_of(text)
    kind = "cloud" if target == "cloud" else "backend"
    prefix = text[line_start(text, block.start):block.start]
    line_end = text.find("\n", block.end)
    suffix = text[block.end:line_end if line_end >= 0 else len(text)].strip()
    own_line = not prefix.strip() and (not suffix or suffix.startswith(("#", "//", "/*")))
    label = "cloud block" if target == "cloud" else 'backend "remote"'
    change = Change(root, block.file.rel, block.start_line, block.end_line, f"replace with {label}",
                    _describe(block) + (f" (address {block.setting('address')})" if block.setting("address") else ""),
                    f"{label} {to} on {host}")
    if block.file.format == "json":
        if own_line:
            # The indent step is the member's indent minus that of the line opening the terraform object.
            parent_line = text[line_start(text, block.terraform_start):block.terraform_start]
            parent_indent = parent_line[:len(parent_line) - len(parent_line.lstrip(" \t"))]
            unit = prefix[len(parent_indent):] if prefix.startswith(parent_indent) and len(prefix) > len(parent_indent) \
                else "  "
            replacement = _render_json(kind, host, org, workspace, prefix, unit, newline)
        else:
            replacement = _render_json(kind, host, org, workspace, "", None, newline)
        return _splice(block.file, block.start, block.end, replacement), change
    if own_line:
        unit = _indent_unit(text, prefix)
        return _splice(block.file, block.start, block.end,
                       _render_hcl(kind, host, org, workspace, prefix, unit, newline)), change
    tf_prefix = text[line_start(text, block.terraform_start):block.terraform_start]
    one_line_tf = line_of(text, block.terraform_start) == line_of(text, block.terraform_end - 1)
    if one_line_tf and block.terraform_items == 1 and not tf_prefix.strip():
        # `terraform { backend "atlas" { name = "..." } }`: HCL2 forbids a nested block on one line, so
        # the terraform block, which holds nothing else, is rendered again around the new block.
        unit = _indent_unit(text, tf_prefix)
        inner = _render_hcl(kind, host, org, workspace, tf_prefix + unit, unit, newline)
        replacement = f"terraform {{{newline}{tf_prefix}{unit}{inner}{newline}{tf_prefix}}}"
        return _splice(block.file, block.terraform_start, block.terraform_end, replacement), change
    raise HclError(f"the backend block in {block.where} shares its line with other code; put the block on "
                   f"lines of its own, then rerun.")


def _verify_backend(files: list[ConfigFile], rewrite: FileRewrite, root: str, target: str,
                    new_ref: tuple[str, str], hostname: str | None, before: BackendBlock) -> None:
    """Parse the rewritten root back: the effective block must now have exactly the intended settings."""
    reparsed = []
    for config in files:
        if config.path == rewrite.path:
            try:
                config = parse_config_text(config.path, config.rel, config.root, rewrite.new_text)
            except HclError as exc:
                raise HclError(f"the rewritten {config.rel} does not parse back ({exc}); nothing was written.") from exc
        reparsed.append(config)
    after, _ = effective_backend(reparsed, root)
    problems = []
    if after is None or not _shape_matches(after, target) or _pointer(after) != new_ref:
        problems.append(f"it does not point at {new_ref[0]}/{new_ref[1]} with the {target} target")
    elif target == "atlas" and after.setting("address") != before.setting("address"):
        problems.append("the atlas address changed")
    elif target != "atlas" and hostname and after.setting("hostname") != hostname:
        problems.append(f"its hostname is not {hostname}")
    if problems:
        raise HclError(f"the rewritten {rewrite.rel} failed verification ({problems[0]}); nothing was written.")


# ---------------------------------------------------------------------------------------------------
# Step 3.b: add the legacy atlas block where none is configured
# ---------------------------------------------------------------------------------------------------

def plan_add_legacy_backend(root_dir: str | os.PathLike, *, from_: str, address: str | None = None) -> RewritePlan:
    """Plan seed step 3.b: configure `backend "atlas" { name = "<LEGACY_ORG>/<ENV>" }` where none is.

    The block goes into a new file `legacy_backend.tf` (see the module docstring for why).

    Args:
        root_dir: the root module directory.
        from_: `<LEGACY_ORG>/<ENV>` of the legacy environment.
        address: legacy TFE address for a private installation (omitted: atlas's default host).

    Returns:
        RewritePlan creating the file; empty ("already points at ...") when the atlas block is there.

    Raises:
        HclError: not a root module, a backend already configured otherwise, `legacy_backend.tf`
            exists, or a file cannot be parsed.
    """
    parse_ref(from_)
    root_path = Path(root_dir)
    if not root_path.is_dir():
        raise HclError(f"{root_path} is not a directory; pass the root module directory.")
    files = root_files(root_path)
    if not files:
        raise HclError(f"{root_path} holds no .tf or .tf.json file; pass the root module directory.")
    effective, _ = effective_backend(files, ".")
    plan = RewritePlan(root=root_path, from_=from_, to=from_, target="atlas", message="")
    if effective is not None:
        if _shape_matches(effective, "atlas") and _pointer(effective) == parse_ref(from_):
            plan.message = f"already points at {from_} ({effective.where}); nothing to add."
            return plan
        raise HclError(f"root {root_path} already configures {_describe_safe(effective)} in {effective.where}; "
                       f"step 3.b only adds a backend where none is, use backend rewrite instead.")
    target = root_path / LEGACY_BACKEND_FILE
    if target.exists():
        raise HclError(f"{target} already exists; rename or remove it, then rerun.")
    hcl_texts = [config.text for config in files if config.format == "hcl" and "\n" in config.text]
    newline = "\r\n" if hcl_texts and all(newline_of(text) == "\r\n" for text in hcl_texts) else "\n"
    unit = "\t" if any("\n\t" in text for text in hcl_texts) else "  "
    lines = ["terraform {", f'{unit}backend "atlas" {{', f"{unit}{unit}name = {_hcl_string(from_)}"]
    if address:
        lines[-1] = f"{unit}{unit}name    = {_hcl_string(from_)}"
        lines.append(f"{unit}{unit}address = {_hcl_string(address)}")
    lines += [f"{unit}}}", "}", ""]
    new_text = newline.join(lines)
    rewrite = FileRewrite(target, LEGACY_BACKEND_FILE, None, new_text)
    created = parse_config_text(target, LEGACY_BACKEND_FILE, ".", new_text)
    after, _ = effective_backend(files + [created], ".")
    if after is None or _pointer(after) != parse_ref(from_):
        raise HclError(f"the new {LEGACY_BACKEND_FILE} failed verification; nothing was written.")
    plan.files.append(rewrite)
    plan.changes.append(Change(".", LEGACY_BACKEND_FILE, 1, len(lines) - 1, 'add backend "atlas"', "(none)",
                               from_ + (f" at {address}" if address else "")))
    plan.message = f'add backend "atlas" {from_} in a new {LEGACY_BACKEND_FILE}.'
    return plan


# ---------------------------------------------------------------------------------------------------
# terraform_remote_state sources of other environments
# ---------------------------------------------------------------------------------------------------

def plan_remote_state_rewrite(path: str | os.PathLike, *, from_: str, to: str) -> RewritePlan:
    """Plan repointing atlas `terraform_remote_state` sources that read `from_` to read `to` instead.

    Offered separately from the backend rewrite: these sources live in *other* environments' code.
    Only `config.name` changes (the source keeps `backend = "atlas"` and its `address`), which is what
    Terraform 0.11 consumers need; sources reading other environments are left alone.

    Args:
        path: repository or root module; searched recursively.
        from_: `<LEGACY_ORG>/<ENV>` read now.
        to: `<NEW_ORG>/<WORKSPACE>` to read instead.

    Returns:
        RewritePlan (one FileRewrite per touched file); empty when no source reads `from_`.

    Raises:
        HclError: bad arguments, a file that cannot be parsed, or a result that does not parse back.
    """
    parse_ref(from_)
    parse_ref(to, "--to")
    base = Path(path)
    if not base.is_dir():
        raise HclError(f"{base} is not a directory; pass a repository or root module directory.")
    plan = RewritePlan(root=base, from_=from_, to=to, target="atlas", message="")
    already = 0
    for root_dir in iter_root_dirs(base):
        for config in root_files(root_dir, base):
            edits: list[RemoteStateRef] = []
            for ref in remote_state_refs(config):
                name = ref.name
                if name is None or not name.literal:
                    shown = name.plain() if name is not None else "(none)"
                    plan.notes.append(f"{config.rel}:{line_of(config.text, ref.start)} data source {ref.data_source} "
                                      f"has name {shown}; left unchanged")
                elif name.value == from_:
                    edits.append(ref)
                elif name.value == to:
                    already += 1
            if edits:
                plan.files.append(_edit_remote_state(config, edits, from_, to, plan))
    if plan.is_empty:
        plan.message = (f"already points at {to} ({already} source(s)); nothing to change." if already
                        else f"no atlas terraform_remote_state source reads {from_}; nothing to change.")
    else:
        plan.message = f"repoint {len(plan.changes)} terraform_remote_state source(s) from {from_} to {to}."
    return plan


def _edit_remote_state(config: ConfigFile, refs: list[RemoteStateRef], from_: str, to: str,
                       plan: RewritePlan) -> FileRewrite:
    literal = json.dumps(to, ensure_ascii=False) if config.format == "json" else _hcl_string(to)
    text = config.text
    # Splice from the end so earlier offsets stay valid.
    for ref in sorted(refs, key=lambda r: r.name.start, reverse=True):
        text = text[:ref.name.start] + literal + text[ref.name.end:]
    for ref in refs:
        plan.changes.append(Change(config.root, config.rel, line_of(config.text, ref.start),
                                   line_of(config.text, ref.end - 1),
                                   f"set terraform_remote_state.{ref.data_source} config.name", from_, to))
    _check_outside(config.text, text, [(ref.name.start, ref.name.end) for ref in refs], literal, config.rel)
    after = parse_config_text(config.path, config.rel, config.root, text)
    names = sorted((ref.data_source, ref.name.value if ref.name else None) for ref in remote_state_refs(after))
    expected = sorted((ref.data_source, ref.name.value if ref.name else None) for ref in remote_state_refs(config))
    expected = [(source, to if name == from_ else name) for source, name in expected]
    if names != sorted(expected):
        raise HclError(f"the rewritten {config.rel} failed verification (remote state names); nothing was written.")
    return FileRewrite(config.path, config.rel, config.text, text)


def _check_outside(old: str, new: str, spans: list[tuple[int, int]], literal: str, rel: str) -> None:
    """Rebuild `new` from `old` and the spans: every byte outside the spans must be the same."""
    rebuilt, pos = [], 0
    for start, end in sorted(spans):
        rebuilt += [old[pos:start], literal]
        pos = end
    rebuilt.append(old[pos:])
    if "".join(rebuilt) != new:
        raise HclError(f"internal error splicing {rel}; nothing was written.")


# ---------------------------------------------------------------------------------------------------
# Apply
# ---------------------------------------------------------------------------------------------------

def _require_clean_git(paths: list[Path]) -> str:
    try:
        for path in paths:
            if not git.tracked_and_clean(path):
                raise HclError(f"{path} is not tracked and unmodified in git; commit it first, or apply with "
                               f"backups.")
        head = git.head(paths[0].parent, short=True)
    except git.GitError as exc:
        raise HclError(f"{exc}; apply with backup=True instead.") from exc
    return f"no backup files: every file was tracked and clean in git at {head} (git diff shows the change)"


def _backup_path(path: Path, content: str) -> Path:
    candidate = path.with_name(path.name + ".bak")
    number = 0
    while candidate.exists():
        if candidate.read_bytes() == content.encode("utf-8"):
            return candidate
        number += 1
        candidate = path.with_name(f"{path.name}.bak.{number}")
    return candidate


def _write_atomic(path: Path, text: str, mode_from: Path | None = None) -> None:
    # Keep the file's permissions (a backup takes the original's): a rewrite must not widen access.
    source = mode_from or path
    mode = source.stat().st_mode & 0o7777 if source.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise HclError(f"cannot write {path} ({exc.strerror}); check permissions.") from exc


def apply_rewrite(plan: RewritePlan, *, backup: bool = True) -> ApplyResult:
    """Write a plan's files, after checking that none changed since the plan was made.

    Args:
        plan: from `plan_rewrite`, `plan_add_legacy_backend` or `plan_remote_state_rewrite`.
        backup: write `<file>.bak` beside each existing file first; with False, every file must be
            tracked and clean in git instead (the result's `safety` says which protection was used).

    Returns:
        ApplyResult: the list of paths written, plus `.backups` and `.safety`. Empty for an empty plan,
        so a second apply of a fresh plan changes nothing.

    Raises:
        HclError: a file changed on disk since the plan, a file to create exists, the git tree is not
            clean (backup=False), or a write failed.
    """
    if plan.is_empty:
        return ApplyResult([], [], f"nothing written: {plan.message}")
    for rewrite in plan.files:
        if rewrite.old_text is None:
            if rewrite.path.exists():
                raise HclError(f"{rewrite.path} appeared since the plan was made; plan again.")
        elif not rewrite.path.is_file() or rewrite.path.read_bytes() != rewrite.old_text.encode("utf-8"):
            raise HclError(f"{rewrite.path} changed since the plan was made; plan again.")
    existing = [rewrite for rewrite in plan.files if rewrite.old_text is not None]
    backups: list[str] = []
    if backup:
        for rewrite in existing:
            target = _backup_path(rewrite.path, rewrite.old_text or "")
            if not target.exists():
                _write_atomic(target, rewrite.old_text or "", mode_from=rewrite.path)
            backups.append(str(target))
        safety = f"backup beside each file: {', '.join(backups)}" if backups else "new file only, nothing to back up"
    else:
        safety = _require_clean_git([rewrite.path for rewrite in existing]) if existing else \
            "new file only, nothing to back up"
    written = []
    for rewrite in plan.files:
        _write_atomic(rewrite.path, rewrite.new_text)
        written.append(str(rewrite.path))
    return ApplyResult(written, backups, safety)
