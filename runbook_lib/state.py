"""Terraform state files, version 3 (Terraform 0.11) and version 4 (0.12 and later), as one model.

A state is read once from its exact bytes: the md5 and sha256 are of those bytes (what the legacy
API and TFE state versions are checked against), and the JSON is parsed once with `json.loads`.
Resources become a pandas DataFrame whose addresses are the same for a 0.11 state and for that
state after Terraform 1.x upgraded it (`null_resource.a`, `module.child.null_resource.b`,
`data.null_data_source.x`), so a migration can prove that nothing was lost on the way.

States hold secrets (sensitive outputs, passwords in attributes). Nothing here ever puts a value
from a state into an exception message or a repr: messages name at most the offending key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping

from runbook_lib.errors import StateError
from runbook_lib.jsontext import load_json

if TYPE_CHECKING:
    import pandas as pd
# pandas is imported where a table is built: the API clients read state headers through this module
# and stay light to import.

SUPPORTED_VERSIONS = (3, 4)
RESOURCE_COLUMNS = ["address", "module", "mode", "type", "name", "instances", "provider", "provider_address"]
INSTANCE_COLUMNS = ["address", "resource", "index_key", "id", "tainted"]
DIFF_COLUMNS = ["address", "difference", "detail"]

# v3 resource keys: "[data.]type.name[.index]"; types and names never contain dots.
_V3_KEY = re.compile(r"^(?P<data>data\.)?(?P<type>[^.]+)\.(?P<name>[^.]+)(?:\.(?P<index>\d+))?$")
# v4 (1.x): module.x.provider["registry.terraform.io/hashicorp/null"].alias
_V4_PROVIDER = re.compile(r'provider\["(?P<source>[^"]+)"\](?:\.(?P<alias>[^.\s]+))?$')
# v3 and early v4 (0.12): "provider.null", "provider.aws.west", "module.child.provider.null"
_LEGACY_PROVIDER = re.compile(r"(?:^|\.)provider\.(?P<name>[^.\s]+)(?:\.(?P<alias>[^.\s]+))?$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Instance:
    """One current (not deposed) instance of a resource; `attributes` refers into the parsed JSON."""

    resource: str
    index_key: int | str | None
    id: str | None
    tainted: bool
    attribute_format: str  # "flat" (v3, or v4 `attributes_flat` not yet upgraded) or "json"
    attributes: Mapping[str, Any] = field(repr=False)

    @property
    def address(self) -> str:
        if self.index_key is None:
            return self.resource
        if isinstance(self.index_key, int):
            return f"{self.resource}[{self.index_key}]"
        return f"{self.resource}[{json.dumps(self.index_key)}]"


@dataclass(frozen=True, eq=False)
class TerraformState:
    """A parsed Terraform state file (version 3 or 4), keeping the exact bytes it was read from.

    Attributes:
        raw: the exact bytes of the file (not shown in repr: states hold secrets).
        version: state format version, 3 (Terraform 0.11) or 4 (0.12+).
        terraform_version: the terraform that wrote it ("0.11.11", "1.15.5"), or None if absent.
        serial: the state's serial, incremented by terraform on every write.
        lineage: the state's lineage, fixed when the state is first created.
        md5: hex md5 of `raw` (what the legacy API and TFE state versions are checked against).
        sha256: hex sha256 of `raw` (for the audit trail).
        outputs: root module outputs, name -> value (values may be secret; never logged here).
    """

    raw: bytes = field(repr=False)
    version: int
    terraform_version: str | None
    serial: int
    lineage: str
    md5: str
    sha256: str
    outputs: Mapping[str, Any] = field(repr=False)
    _resources: tuple[tuple[str, str, str, str, str, str, str], ...] = field(repr=False)
    _instances: tuple[_Instance, ...] = field(repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> "TerraformState":
        """Parse a state file's bytes.

        Args:
            data: the exact bytes of a `terraform.tfstate` (version 3 or 4).

        Returns:
            The parsed state.

        Raises:
            StateError: empty, not JSON (truncated or corrupt), not a state, unsupported version,
                missing or negative serial, missing lineage, or a malformed resource entry.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StateError(f"a state must be given as bytes, not {type(data).__name__}; "
                             "read the file in binary mode so its md5 is of the exact bytes.")
        data = bytes(data)
        doc = _whole_document(data)
        version = _header(doc)
        serial, lineage = doc["serial"], doc["lineage"]
        tf_version = doc.get("terraform_version")
        if tf_version is not None and not isinstance(tf_version, str):
            raise StateError("the state's 'terraform_version' is not a string; the file is not a valid state.")
        if version == 3:
            outputs, resources, instances = _parse_v3(doc)
        else:
            outputs, resources, instances = _parse_v4(doc)
        md5, sha256 = hashlib.md5(data), hashlib.sha256(data)
        return cls(raw=data, version=version, terraform_version=tf_version, serial=serial, lineage=lineage,
                   md5=md5.hexdigest(), sha256=sha256.hexdigest(), outputs=outputs,
                   _resources=tuple(resources), _instances=tuple(instances))

    @property
    def md5_base64(self) -> str:
        """md5 of the bytes, base64 encoded: the form of a `Content-MD5` header (legacy atlas backend)."""
        return base64.b64encode(bytes.fromhex(self.md5)).decode("ascii")

    @property
    def size(self) -> int:
        """Length of the state in bytes."""
        return len(self.raw)

    @cached_property
    def _frame(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame.from_records(list(self._resources), columns=RESOURCE_COLUMNS)
        frame["instances"] = frame["instances"].astype("int64")
        return frame.sort_values("address", kind="stable").reset_index(drop=True)

    def resources_frame(self) -> pd.DataFrame:
        """The resources as a table, one row per resource (not per instance), sorted by address.

        Columns: address (`module.child.null_resource.b`, `data.null_data_source.x`; the same for a v3
        state and its v4 upgrade), module ("" for root, else `module.child[.module.grand]`), mode
        (managed | data), type, name, instances (current instances, deposed ones not counted),
        provider (local name with alias, e.g. `null`, `aws.west`), provider_address (as in the file).

        Returns:
            A new DataFrame (a copy: callers may change it freely).
        """
        return self._frame.copy()

    def instances_frame(self) -> pd.DataFrame:
        """The current instances as a table: address (with index), resource, index_key, id, tainted.

        v3 index keys are integers; a v3 resource with `count = 1` is stored without an index and
        shows index_key None (Terraform 1.x later moves it to `[0]`).

        Returns:
            A new DataFrame, sorted by address.
        """
        import pandas as pd

        frame = pd.DataFrame({
            "address": [i.address for i in self._instances],
            "resource": [i.resource for i in self._instances],
            # object dtype: keys are ints, strings (for_each) or None, and must not turn into floats.
            "index_key": pd.Series([i.index_key for i in self._instances], dtype=object),
            "id": [i.id for i in self._instances],
            "tainted": pd.Series([i.tainted for i in self._instances], dtype=bool),
        }, columns=INSTANCE_COLUMNS)
        return frame.sort_values("address", kind="stable").reset_index(drop=True)

    @property
    def resource_count(self) -> int:
        """Number of resources (managed and data), not instances."""
        return len(self._resources)

    @property
    def instance_count(self) -> int:
        """Number of current instances over all resources."""
        return len(self._instances)

    def __repr__(self) -> str:
        return (f"TerraformState(version={self.version}, terraform_version={self.terraform_version!r}, "
                f"serial={self.serial}, lineage={self.lineage!r}, md5={self.md5!r}, "
                f"resources={self.resource_count}, outputs={sorted(self.outputs)!r})")


def read_state(path: str | os.PathLike) -> TerraformState:
    """Read and parse a state file.

    Args:
        path: the file, e.g. a `terraform.tfstate` or a backup of a legacy environment's state.

    Returns:
        The parsed state, its md5/sha256 of the file's exact bytes.

    Raises:
        StateError: the file cannot be read, or is not a valid version 3/4 state (see `from_bytes`).
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise StateError(f"cannot read the state file {os.fspath(path)!r}: {exc.strerror}.") from exc
    return TerraformState.from_bytes(data)


@dataclass(frozen=True)
class StateHeader:
    """A state's identity, read without parsing its resources.

    Attributes:
        version, terraform_version, serial, lineage: as in `TerraformState`.
    """

    version: int
    terraform_version: str | None
    serial: int
    lineage: str


_HEADER_BYTES = 64 * 1024
_HEADER_KEYS = ("version", "terraform_version", "serial", "lineage")
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def read_header(data: bytes) -> StateHeader:
    """version, terraform_version, serial and lineage of a state, without parsing all of it.

    Terraform writes these four members first (before `modules`, `outputs`, `resources`), so they are
    read from the leading scalar members of the first 64 KiB: a 50 MB state costs no full parse and no
    second copy. A file that does not start that way (written by hand, members in another order) is
    parsed whole instead, so the answer is the same either way. This reads the header only: whether the
    rest of the file is a valid state is `TerraformState.from_bytes`'s question.

    Raises:
        StateError: not a state (not JSON, no version/serial/lineage, unsupported version): the
            messages of `TerraformState.from_bytes`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StateError(f"a state must be given as bytes, not {type(data).__name__}; "
                         "read the file in binary mode so its md5 is of the exact bytes.")
    members = _leading_members(bytes(data[:_HEADER_BYTES]).decode("utf-8", errors="replace"))
    if members is None or not all(key in members for key in _HEADER_KEYS):
        members = _whole_document(bytes(data))
    version = _header(members)
    tf_version = members.get("terraform_version")
    if tf_version is not None and not isinstance(tf_version, str):
        raise StateError("the state's 'terraform_version' is not a string; the file is not a valid state.")
    return StateHeader(version, tf_version, members["serial"], members["lineage"])


def _leading_members(text: str) -> dict[str, Any] | None:
    """The top-level members with scalar values before the first object or array value (None: not an object)."""
    decoder = json.JSONDecoder()
    position = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("{", position):
        return None
    position += 1
    members: dict[str, Any] = {}
    while True:
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        try:
            key, position = decoder.raw_decode(text, position)
        except ValueError:
            return members
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if not isinstance(key, str) or not text.startswith(":", position):
            return members
        position = _WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
        if text[position:position + 1] in ("{", "["):
            return members
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return members
        members.setdefault(key, value)
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if not text.startswith(",", position):
            return members
        position += 1


def _whole_document(data: bytes) -> dict[str, Any]:
    try:
        doc = load_json(data, StateError,
                        empty="the state is empty (it holds no JSON at all); fetch or back up the state again.",
                        invalid="the state is not valid JSON ({where}); it is probably truncated or corrupt: "
                                "fetch it again.")
    except UnicodeDecodeError as exc:
        raise StateError(f"the state is not UTF-8 text (undecodable byte at offset {exc.start}); "
                         "it is not a Terraform state file.") from exc
    if not isinstance(doc, dict):
        raise StateError(f"the state is a JSON {_json_kind(doc)}, not an object; it is not a Terraform state file.")
    return doc


def file_digests(stream: IO[bytes], chunk_size: int = _CHUNK) -> tuple[str, str, int]:
    """md5 and sha256 (hex) and size of a binary stream, read in chunks so big states need no copy.

    Args:
        stream: an open binary file or response body; read to its end.
        chunk_size: bytes per read.

    Returns:
        (md5 hex, sha256 hex, number of bytes).
    """
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(chunk_size), b""):
        md5.update(chunk)
        sha256.update(chunk)
        size += len(chunk)
    return md5.hexdigest(), sha256.hexdigest(), size


def same_lineage(a: TerraformState, b: TerraformState) -> bool:
    """Whether two states descend from the same original state (same lineage).

    Args:
        a, b: the states.

    Returns:
        True when their lineages are equal.
    """
    return a.lineage == b.lineage


def check_successor(current: TerraformState, candidate: TerraformState) -> None:
    """Refuse a state that may not replace `current`: other lineage, lower serial, or same serial but other bytes.

    This is the rule a state upload obeys (Terraform's own rule, and the runbook's): an upload is accepted
    only if lineage matches and the serial does not go backwards.

    Args:
        current: the state in place now (e.g. the workspace's current state version).
        candidate: the state about to be written.

    Raises:
        StateError: the candidate is not a valid successor; the message says which rule it breaks.
    """
    if not same_lineage(current, candidate):
        raise StateError(f"the state's lineage {candidate.lineage!r} differs from the current {current.lineage!r}; "
                         "it is a different state, not a newer copy: check that the right environment was chosen.")
    if candidate.serial < current.serial:
        raise StateError(f"the state's serial {candidate.serial} is lower than the current serial {current.serial}; "
                         "it is older than what is in place: fetch the current state again instead.")
    if candidate.serial == current.serial and candidate.md5 != current.md5:
        raise StateError(f"the state has the same serial {candidate.serial} as the current state but different "
                         "content; terraform would refuse it: find out which copy is right before writing either.")


def compare_states(a: TerraformState, b: TerraformState) -> pd.DataFrame:
    """What differs between two states, `a` the reference (e.g. the legacy backup), `b` the copy.

    Compared, always: the set of resource addresses, each resource's number of current instances,
    the multiset of instance ids per resource, tainted flags, providers (local name) and root output names.
    Each instance's attributes are compared, by name, whenever both sides store them the same way: v3
    `primary.attributes` and a v4 `attributes_flat` are both flatmaps (`triggers.%`, `triggers.v`), v4
    `attributes` is JSON compared by top-level name; a flatmap is never compared with JSON (0.11 and 1.x
    disagree on empty values and types), the ids above already tie the two together. Only within one format
    version: the instances' index keys (a v3 `count = 1` instance has none, its 1.x upgrade gets `[0]`) and
    output values (0.11 kept numbers as strings). Lineage and serial are not compared here (see
    `same_lineage`, `check_successor`); deposed instances are ignored.

    Args:
        a: the reference state.
        b: the state compared with it.

    Returns:
        DataFrame with columns address (resource address, or `output.NAME`), difference (missing: in `a`
        only; extra: in `b` only; changed: in both but different) and detail (names attributes, never
        values). Empty when the states are equivalent.
    """
    rows: list[tuple[str, str, str]] = []
    res_a = {r[0]: r for r in a._resources}
    res_b = {r[0]: r for r in b._resources}
    inst_a = _instances_by_resource(a._instances)
    inst_b = _instances_by_resource(b._instances)
    same_version = a.version == b.version
    for address in sorted(res_a.keys() | res_b.keys()):
        if address not in res_b:
            rows.append((address, "missing", f"{_plural(res_a[address][5], 'instance')} only in the reference"))
            continue
        if address not in res_a:
            rows.append((address, "extra", f"{_plural(res_b[address][5], 'instance')} not in the reference"))
            continue
        details = _resource_differences(inst_a.get(address, []), inst_b.get(address, []), same_version)
        if res_a[address][6] != res_b[address][6]:
            details.insert(0, f"provider {res_a[address][6]} -> {res_b[address][6]}")
        if details:
            rows.append((address, "changed", "; ".join(details)))
    for name in sorted(a.outputs.keys() | b.outputs.keys()):
        address = f"output.{name}"
        if name not in b.outputs:
            rows.append((address, "missing", "output only in the reference"))
        elif name not in a.outputs:
            rows.append((address, "extra", "output not in the reference"))
        elif same_version and a.outputs[name] != b.outputs[name]:
            rows.append((address, "changed", "output value differs"))
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=DIFF_COLUMNS)


# ----------------------------------------------------------------------------------------------------------
# Parsing

def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _header(doc: dict) -> int:
    """Validate version, serial and lineage; returns the version."""
    if "version" not in doc:
        keys = ", ".join(repr(k) for k in sorted(doc)[:3])
        raise StateError("the JSON has no 'version' key, so it is not a Terraform state file"
                         + (f" (its first keys are {keys})." if keys else " (it is an empty object)."))
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise StateError("the state's 'version' is not an integer; the file is not a valid Terraform state.")
    if version not in SUPPORTED_VERSIONS:
        fix = ("upgrade it first by running Terraform 0.11 once against it (terraform refresh)"
               if version < 3 else "it was written by a Terraform newer than this runbook knows")
        raise StateError(f"state version {version} is not supported (only 3, from Terraform 0.11, and 4, from "
                         f"0.12 and later); {fix}.")
    serial = doc.get("serial")
    if serial is None:
        raise StateError("the state has no 'serial'; the file is not a complete Terraform state.")
    if isinstance(serial, bool) or not isinstance(serial, int):
        raise StateError("the state's 'serial' is not an integer; the file is not a valid Terraform state.")
    if serial < 0:
        raise StateError(f"the state's serial is negative ({serial}); the file is not a valid Terraform state.")
    lineage = doc.get("lineage")
    if not isinstance(lineage, str) or not lineage:
        raise StateError("the state has no 'lineage'; the runbook cannot prove where it came from: fetch the "
                         "state from the legacy environment again (terraform writes a lineage on every save).")
    return version


def _provider_name(provider: str, type_: str) -> str:
    """Local provider name with alias (`null`, `aws.west`) from a v3 or v4 provider address."""
    match = _V4_PROVIDER.search(provider)
    if match:
        name = match.group("source").rsplit("/", 1)[-1]
        return f"{name}.{match.group('alias')}" if match.group("alias") else name
    match = _LEGACY_PROVIDER.search(provider)
    if match:
        return f"{match.group('name')}.{match.group('alias')}" if match.group("alias") else match.group("name")
    # Very old states leave the provider empty; terraform then infers it from the type's prefix.
    return type_.split("_", 1)[0]


def _v3_module(path: Any, position: int) -> str:
    if (not isinstance(path, list) or not path or path[0] != "root"
            or not all(isinstance(p, str) and p for p in path)):
        raise StateError(f"module #{position} of the state has an invalid 'path' (expected ['root', ...]); "
                         "the file is not a valid version 3 state.")
    return "".join(f"module.{p}." for p in path[1:]).rstrip(".")


def _parse_v3(doc: dict) -> tuple[dict, list, list]:
    modules = doc.get("modules")
    if not isinstance(modules, list):
        raise StateError("the version 3 state has no 'modules' list; the file is not a valid version 3 state.")
    outputs: dict[str, Any] = {}
    resources: dict[str, list] = {}
    instances: list[_Instance] = []
    for position, module in enumerate(modules):
        if not isinstance(module, dict):
            raise StateError(f"module #{position} of the state is not an object; the file is not a valid state.")
        prefix = _v3_module(module.get("path"), position)
        if not prefix:
            module_outputs = module.get("outputs")
            module_outputs = {} if module_outputs is None else module_outputs
            if not isinstance(module_outputs, dict):
                raise StateError("the root module's 'outputs' is not an object; the file is not a valid state.")
            for name, output in module_outputs.items():
                outputs[name] = output.get("value") if isinstance(output, dict) else output
        entries = module.get("resources")
        entries = {} if entries is None else entries
        if not isinstance(entries, dict):
            raise StateError(f"module #{position} of the state has 'resources' that is not an object; "
                             "the file is not a valid version 3 state.")
        for key, entry in entries.items():
            match = _V3_KEY.match(key)
            if not match or not isinstance(entry, dict):
                raise StateError(f"the state's resource key {key!r} is not of the form [data.]TYPE.NAME[.INDEX]; "
                                 "the file is not a valid version 3 state.")
            mode = "data" if match.group("data") else "managed"
            type_, name = match.group("type"), match.group("name")
            local = f"{'data.' if mode == 'data' else ''}{type_}.{name}"
            address = f"{prefix}.{local}" if prefix else local
            provider = entry.get("provider") or ""
            row = resources.get(address)
            if row is None:
                row = resources[address] = [address, prefix, mode, type_, name, 0,
                                            _provider_name(str(provider), type_), str(provider)]
            primary = entry.get("primary")
            # A resource entry with only deposed instances has a null primary: it has no current instance.
            if primary is None:
                continue
            if not isinstance(primary, dict):
                raise StateError(f"the state's resource {key!r} has a 'primary' that is not an object; "
                                 "the file is not a valid version 3 state.")
            row[5] += 1
            attributes = primary.get("attributes")
            attributes = {} if attributes is None else attributes
            if not isinstance(attributes, dict):
                raise StateError(f"the state's resource {key!r} has 'attributes' that are not an object; "
                                 "the file is not a valid version 3 state.")
            index = match.group("index")
            instances.append(_Instance(address, int(index) if index is not None else None,
                                       primary.get("id"), bool(primary.get("tainted")), "flat", attributes))
    return outputs, [tuple(r) for r in resources.values()], instances


def _parse_v4(doc: dict) -> tuple[dict, list, list]:
    raw_outputs = doc.get("outputs")
    raw_outputs = {} if raw_outputs is None else raw_outputs
    if not isinstance(raw_outputs, dict):
        raise StateError("the state's 'outputs' is not an object; the file is not a valid version 4 state.")
    outputs = {name: (o.get("value") if isinstance(o, dict) else o) for name, o in raw_outputs.items()}
    entries = doc.get("resources")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise StateError("the state's 'resources' is not a list; the file is not a valid version 4 state.")
    resources: list[tuple] = []
    instances: list[_Instance] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise StateError(f"resource #{position} of the state is not an object; the file is not a valid state.")
        mode, type_, name = entry.get("mode"), entry.get("type"), entry.get("name")
        for key, value in (("type", type_), ("name", name)):
            if not isinstance(value, str) or not value:
                raise StateError(f"resource #{position} of the state has no '{key}'; the file is not a valid state.")
        if mode not in ("managed", "data"):
            raise StateError(f"resource #{position} of the state has mode {mode!r} (expected 'managed' or 'data'); "
                             "the file is not a valid version 4 state.")
        module = entry.get("module") or ""
        if not isinstance(module, str):
            raise StateError(f"resource #{position} of the state has a 'module' that is not a string; "
                             "the file is not a valid version 4 state.")
        local = f"{'data.' if mode == 'data' else ''}{type_}.{name}"
        address = f"{module}.{local}" if module else local
        items = entry.get("instances")
        items = [] if items is None else items
        if not isinstance(items, list):
            raise StateError(f"the state's resource {address!r} has 'instances' that is not a list; "
                             "the file is not a valid version 4 state.")
        current = 0
        for item in items:
            if not isinstance(item, dict):
                raise StateError(f"an instance of the state's resource {address!r} is not an object; "
                                 "the file is not a valid version 4 state.")
            # Deposed objects (left by a failed create_before_destroy) are not current instances.
            if item.get("deposed"):
                continue
            current += 1
            attributes, attribute_format = item.get("attributes"), "json"
            if attributes is None:
                # A v3 state upgraded without the provider's schema (e.g. by `terraform state
                # replace-provider`) keeps the 0.11 flatmap until the next refresh or apply.
                attributes, attribute_format = item.get("attributes_flat"), "flat"
                attributes = {} if attributes is None else attributes
            if not isinstance(attributes, dict):
                raise StateError(f"an instance of the state's resource {address!r} has attributes that are not an "
                                 "object; the file is not a valid version 4 state.")
            instances.append(_Instance(address, item.get("index_key"), attributes.get("id"),
                                       item.get("status") == "tainted", attribute_format, attributes))
        provider = str(entry.get("provider") or "")
        resources.append((address, module, mode, type_, name, current, _provider_name(provider, type_), provider))
    return outputs, resources, instances


# ----------------------------------------------------------------------------------------------------------
# Comparing

def _instances_by_resource(instances: Iterable[_Instance]) -> dict[str, list[_Instance]]:
    grouped: dict[str, list[_Instance]] = {}
    for instance in instances:
        grouped.setdefault(instance.resource, []).append(instance)
    return grouped


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _resource_differences(left: list[_Instance], right: list[_Instance], same_version: bool) -> list[str]:
    if len(left) != len(right):
        return [f"instances {len(left)} -> {len(right)}"]
    details: list[str] = []
    if sorted(map(_id_key, left)) != sorted(map(_id_key, right)):
        # Ids are compared as a multiset: a v3 `count = 1` instance has no index, its 1.x upgrade may have [0].
        details.append("instance ids differ")
    by_key_left = {i.index_key: i for i in left}
    by_key_right = {i.index_key: i for i in right}
    if by_key_left.keys() | by_key_right.keys() == {None, 0} and len(left) == 1:
        # 0.11 stored a `count = 1` instance without an index; 1.x moves it to [0] on its first write.
        # Both name the same object, so pair them instead of reporting a difference.
        by_key_left, by_key_right = {0: left[0]}, {0: right[0]}
    if by_key_left.keys() != by_key_right.keys():
        # Across versions keys legitimately differ (see above); within one version they must not.
        if same_version:
            details.append("instance keys differ")
        return details
    for key in sorted(by_key_left, key=lambda k: (type(k).__name__, "" if k is None else k)):
        one, other = by_key_left[key], by_key_right[key]
        changed: list[str] = []
        if one.tainted != other.tainted:
            changed.append("(tainted)")
        # Flatmap and JSON attributes cannot be compared name by name; ids were compared above.
        if one.attribute_format == other.attribute_format:
            changed += _changed_attributes(one.attributes, other.attributes)
        if changed:
            where = "" if key is None else f"[{json.dumps(key)}] "
            details.append(f"{where}attributes differ: {', '.join(changed)}")
    return details


def _id_key(instance: _Instance) -> str:
    return "" if instance.id is None else str(instance.id)


def _changed_attributes(left: Any, right: Any) -> list[str]:
    if not isinstance(left, dict) or not isinstance(right, dict):
        return [] if left == right else ["(attributes)"]
    return sorted(str(k) for k in left.keys() | right.keys() if left.get(k, _ABSENT) != right.get(k, _ABSENT))


_ABSENT = object()
