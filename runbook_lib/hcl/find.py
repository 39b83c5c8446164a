"""Find `terraform { backend ... }` / `cloud` blocks and atlas `terraform_remote_state` sources.

A root module is a directory of `.tf` / `.tf.json` files that Terraform merges; a repository may hold
several (a monorepo with one working directory per environment) next to modules without backends.
Files named `override.tf(.json)` or `*_override.tf(.json)` are override files: Terraform applies them
last, and a backend or cloud block in one replaces the root's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from runbook_lib.errors import HclError
from runbook_lib.hcl._syntax import Block, Value, json_objects, json_plain, line_of, parse_hcl, parse_json

SKIP_DIRS = {".git", ".terraform"}
FIND_COLUMNS = ["root", "file", "start_line", "end_line", "kind", "type", "name", "address", "organization",
                "hostname", "workspaces", "is_override", "format"]
REMOTE_STATE_COLUMNS = ["root", "file", "start_line", "end_line", "data_source", "backend", "name", "address",
                        "format"]


def is_config_file(name: str) -> bool:
    """True for the files Terraform reads as configuration (`.tf`, `.tf.json`)."""
    return name.endswith(".tf") or name.endswith(".tf.json")


def is_override_file(name: str) -> bool:
    """True for Terraform override files: `override.tf(.json)` and `*_override.tf(.json)`."""
    stem = name[:-len(".tf.json")] if name.endswith(".tf.json") else name[:-len(".tf")]
    return stem == "override" or stem.endswith("_override")


@dataclass
class ConfigFile:
    """One parsed configuration file: its exact text and top-level structure with spans."""

    path: Path
    rel: str
    root: str
    text: str
    format: str  # "hcl" or "json"
    is_override: bool
    blocks: list[Block] = field(default_factory=list)  # HCL top-level blocks
    json_root: Value | None = None  # JSON top-level object


@dataclass
class BackendBlock:
    """One `backend "<type>"` or `cloud` block found inside a `terraform` block.

    `start`/`end` span the block itself (HCL: from the `backend`/`cloud` keyword to its closing brace;
    JSON: from the `"backend"`/`"cloud"` member key to the end of its value). `terraform_start` /
    `terraform_end` span the enclosing `terraform` block (or JSON object); `terraform_items` counts the
    attributes and blocks in it, for the one-line case.
    """

    file: ConfigFile
    kind: str
    type: str
    start: int
    end: int
    settings: dict[str, Value]
    workspaces: dict[str, Any] | None
    terraform_start: int
    terraform_end: int
    terraform_items: int

    @property
    def start_line(self) -> int:
        return line_of(self.file.text, self.start)

    @property
    def end_line(self) -> int:
        return line_of(self.file.text, self.end - 1)

    @property
    def where(self) -> str:
        return f"{self.file.rel}:{self.start_line}"

    def setting(self, key: str) -> Any:
        """A setting's plain value (None when absent); computed expressions come back as source text."""
        value = self.settings.get(key)
        return None if value is None else value.plain()

    def workspaces_text(self) -> str | None:
        if not self.workspaces:
            return None
        return ", ".join(f"{key}={value}" for key, value in self.workspaces.items())

    def row(self) -> dict[str, Any]:
        return {"root": self.file.root, "file": self.file.rel, "start_line": self.start_line,
                "end_line": self.end_line, "kind": self.kind, "type": self.type,
                "name": self.setting("name"), "address": self.setting("address"),
                "organization": self.setting("organization"), "hostname": self.setting("hostname"),
                "workspaces": self.workspaces_text(), "is_override": self.file.is_override,
                "format": self.file.format}


@dataclass
class RemoteStateRef:
    """A `data "terraform_remote_state"` source reading through the `atlas` backend."""

    file: ConfigFile
    data_source: str
    start: int
    end: int
    backend: str
    config: dict[str, Value]

    @property
    def name(self) -> Value | None:
        return self.config.get("name")

    def row(self) -> dict[str, Any]:
        address = self.config.get("address")
        return {"root": self.file.root, "file": self.file.rel, "start_line": line_of(self.file.text, self.start),
                "end_line": line_of(self.file.text, self.end - 1), "data_source": self.data_source,
                "backend": self.backend, "name": self.name.plain() if self.name else None,
                "address": address.plain() if address else None, "format": self.file.format}


# ---------------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------------

def read_config_file(path: Path, base: Path) -> ConfigFile:
    """Read and parse one `.tf` / `.tf.json` file, keeping its text byte for byte.

    Raises:
        HclError: the file is not UTF-8, or cannot be parsed.
    """
    rel = os.path.relpath(path, base)
    root = os.path.relpath(path.parent, base)
    try:
        # Decoding bytes (not text mode) keeps CRLF line endings exactly as on disk.
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HclError(f"{rel} is not UTF-8 text; Terraform requires UTF-8, re-save it as UTF-8.") from exc
    except OSError as exc:
        raise HclError(f"{rel} cannot be read ({exc.strerror}); check its permissions.") from exc
    return parse_config_text(path, rel, root, text)


def parse_config_text(path: Path, rel: str, root: str, text: str) -> ConfigFile:
    """Parse the text of a configuration file (read from disk, or a rewrite about to be written).

    Raises:
        HclError: the text cannot be parsed.
    """
    is_json = path.name.endswith(".tf.json")
    config = ConfigFile(path=path, rel=rel, root=root, text=text, format="json" if is_json else "hcl",
                        is_override=is_override_file(path.name))
    if is_json:
        config.json_root = parse_json(text, rel)
    else:
        config.blocks = parse_hcl(text, rel)
    return config


def root_files(root_dir: Path, base: Path | None = None) -> list[ConfigFile]:
    """The configuration files of one root module (not its subdirectories), in Terraform's order.

    Terraform loads files in lexical order, override files after the others.
    """
    base = base or root_dir
    names = sorted(name for name in os.listdir(root_dir) if is_config_file(name) and (root_dir / name).is_file())
    names.sort(key=is_override_file)  # stable: normal files first, then overrides, each lexical
    return [read_config_file(root_dir / name, base) for name in names]


def iter_root_dirs(path: Path) -> Iterator[Path]:
    """Every directory under `path` (itself included) holding configuration files, sorted; skips .git, .terraform."""
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        if any(is_config_file(name) for name in filenames):
            yield Path(dirpath)


# ---------------------------------------------------------------------------------------------------
# Backend blocks
# ---------------------------------------------------------------------------------------------------

def backend_blocks(config: ConfigFile) -> list[BackendBlock]:
    """All backend and cloud blocks inside `terraform` blocks of one file, in file order."""
    if config.format == "json":
        return _json_backend_blocks(config)
    found = []
    for block in config.blocks:
        if block.type != "terraform":
            continue
        items = len(block.attrs) + len(block.duplicates) + len(block.blocks)
        for inner in block.blocks:
            if inner.type == "backend" or inner.type == "cloud":
                kind = inner.type
                backend_type = "cloud" if kind == "cloud" else (inner.labels[0] if inner.labels else "")
                workspaces = None
                for ws in inner.blocks:
                    if ws.type == "workspaces":
                        workspaces = {key: value.plain() for key, value in ws.attrs.items()}
                if "workspaces" in inner.attrs:  # `workspaces = { ... }` is not valid, but report what is there
                    plain = inner.attrs["workspaces"].plain()
                    workspaces = plain if isinstance(plain, dict) else {"value": plain}
                found.append(BackendBlock(config, kind, backend_type, inner.start, inner.end, dict(inner.attrs),
                                          workspaces, block.start, block.end, items))
    return found


def _members(value: Value) -> dict[str, Value]:
    """First value of each member of a positioned JSON object."""
    return {key: members[0].value for key, members in value.value.items()} if isinstance(value.value, dict) else {}


def _json_settings(value: Value) -> dict[str, Value]:
    settings = {}
    for key, member in _members(value).items():
        if isinstance(member.value, (dict, list)):
            settings[key] = Value(json_plain(member), True, member.start, member.end)
        else:
            settings[key] = member
    return settings


def _json_workspaces(settings: dict[str, Value]) -> dict[str, Any] | None:
    ws = settings.get("workspaces")
    if ws is None:
        return None
    plain = ws.value
    if isinstance(plain, list):
        plain = plain[0] if plain and isinstance(plain[0], dict) else {}
    return plain if isinstance(plain, dict) else {"value": plain}


def _json_backend_blocks(config: ConfigFile) -> list[BackendBlock]:
    found: list[BackendBlock] = []
    if config.json_root is None or not isinstance(config.json_root.value, dict):
        return found
    for tf_member in config.json_root.value.get("terraform", []):
        for tf_obj in json_objects(tf_member.value):
            members = tf_obj.value
            items = sum(len(group) for group in members.values())
            for member in members.get("backend", []):
                for backend_obj in json_objects(member.value):
                    for type_name, type_members in backend_obj.value.items():
                        for type_member in type_members:
                            for settings_obj in json_objects(type_member.value) or [type_member.value]:
                                settings = _json_settings(settings_obj)
                                found.append(BackendBlock(config, "backend", type_name, member.key_start,
                                                          member.value.end, settings, _json_workspaces(settings),
                                                          tf_obj.start, tf_obj.end, items))
            for member in members.get("cloud", []):
                for cloud_obj in json_objects(member.value) or [member.value]:
                    settings = _json_settings(cloud_obj)
                    found.append(BackendBlock(config, "cloud", "cloud", member.key_start, member.value.end,
                                              settings, _json_workspaces(settings), tf_obj.start, tf_obj.end, items))
    return found


def find_backends(path: str | os.PathLike) -> "pandas.DataFrame":  # noqa: F821
    """Every backend and cloud block in every root module under `path`.

    Args:
        path: a repository, or one working directory of it.

    Returns:
        DataFrame with columns `FIND_COLUMNS` (root and file relative to `path`; start_line/end_line
        1-based, inclusive; workspaces as `key=value` text), one row per block, roots sorted.

    Raises:
        HclError: `path` is not a directory, or a configuration file cannot be read or parsed.
    """
    return _find(path, backends=True, refs=False)[0]


def _directory(path: str | os.PathLike) -> Path:
    base = Path(path)
    if not base.is_dir():
        raise HclError(f"{base} is not a directory; pass a repository or a root module directory.")
    return base


# ---------------------------------------------------------------------------------------------------
# terraform_remote_state
# ---------------------------------------------------------------------------------------------------

def remote_state_refs(config: ConfigFile, backend: str = "atlas") -> list[RemoteStateRef]:
    """`terraform_remote_state` data sources of one file whose backend is `backend` (literal)."""
    refs: list[RemoteStateRef] = []
    if config.format == "json":
        root = config.json_root
        if root is None or not isinstance(root.value, dict):
            return refs
        for data_member in root.value.get("data", []):
            for data_obj in json_objects(data_member.value):
                for rs_member in data_obj.value.get("terraform_remote_state", []):
                    for rs_obj in json_objects(rs_member.value):
                        for name, sources in rs_obj.value.items():
                            for source in sources:
                                for body in json_objects(source.value):
                                    attrs = _members(body)
                                    backend_value = attrs.get("backend")
                                    if backend_value is None or backend_value.value != backend:
                                        continue
                                    config_value = attrs.get("config")
                                    settings = {}
                                    for config_obj in (json_objects(config_value) if config_value else []):
                                        settings = {k: v for k, v in _members(config_obj).items()}
                                        break
                                    refs.append(RemoteStateRef(config, name, source.key_start, source.value.end,
                                                               backend, settings))
        return refs
    for block in config.blocks:
        if block.type != "data" or len(block.labels) != 2 or block.labels[0] != "terraform_remote_state":
            continue
        backend_value = block.attrs.get("backend")
        if backend_value is None or not backend_value.literal or backend_value.value != backend:
            continue
        settings: dict[str, Value] = {}
        if "config" in block.attrs and isinstance(block.attrs["config"].value, dict):
            settings = dict(block.attrs["config"].value)  # 0.12+ (and 0.11) `config = { ... }`
        for inner in block.blocks:
            if inner.type == "config":  # 0.11 `config { ... }`
                settings = dict(inner.attrs)
        refs.append(RemoteStateRef(config, block.labels[1], block.start, block.end, backend, settings))
    return refs


def find_remote_state_refs(path: str | os.PathLike) -> "pandas.DataFrame":  # noqa: F821
    """Every `terraform_remote_state` data source under `path` that reads through the `atlas` backend.

    Other environments depend on a legacy environment through these; the inventory and step 5 show them.

    Args:
        path: a repository, or one working directory of it.

    Returns:
        DataFrame with columns `REMOTE_STATE_COLUMNS` (`name` is `config.name`, the `<ORG>/<ENV>` read).

    Raises:
        HclError: `path` is not a directory, or a configuration file cannot be read or parsed.
    """
    return _find(path, backends=False, refs=True)[1]


def find_all(path: str | os.PathLike) -> tuple["pandas.DataFrame", "pandas.DataFrame"]:  # noqa: F821
    """`find_backends(path)` and `find_remote_state_refs(path)` from one reading of each file.

    What `tfe-runbook backend show` prints: on a large repository, reading and scanning every file once
    instead of twice halves its time.

    Raises:
        HclError: `path` is not a directory, or a configuration file cannot be read or parsed.
    """
    return _find(path, backends=True, refs=True)


def _find(path: str | os.PathLike, *, backends: bool, refs: bool) -> tuple[Any, Any]:
    """One walk of every root under `path`: the backend rows and/or the remote-state rows, as DataFrames."""
    import pandas as pd

    base = _directory(path)
    backend_rows: list[dict[str, Any]] = []
    ref_rows: list[dict[str, Any]] = []
    for root in iter_root_dirs(base):
        for config in root_files(root, base):
            if backends:
                backend_rows += [block.row() for block in backend_blocks(config)]
            if refs:
                ref_rows += [ref.row() for ref in remote_state_refs(config)]
    return (_frame(pd.DataFrame(backend_rows, columns=FIND_COLUMNS)) if backends else None,
            _frame(pd.DataFrame(ref_rows, columns=REMOTE_STATE_COLUMNS)) if refs else None)


def _frame(frame: "pandas.DataFrame") -> "pandas.DataFrame":  # noqa: F821
    """Absent settings shown as None, not NaN: pandas turns None into NaN in text columns."""
    for column in frame.columns:
        if frame[column].dtype.kind not in "iubf":
            values = frame[column].astype(object)
            frame[column] = values.where(values.notna(), None)
    return frame
