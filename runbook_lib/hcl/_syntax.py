"""Exact source positions for Terraform configuration: HCL through python-hcl2's parser, JSON by hand.

Why not `hcl2.loads(..., with_meta=True)`: it gives line numbers of blocks at best, and a rewrite that
keeps every other byte identical needs character offsets. python-hcl2 builds its Lark parser with
`propagate_positions=True`, so its raw parse tree (`hcl2.api.parses_to_tree`) carries `start_pos` /
`end_pos` for every rule and token. This module turns that tree into a small model (`Block`, `Value`)
with offsets into the exact text read from disk (CRLF kept; Lark skips `\\r` as whitespace and counts
positions in the string it was given). Every block the rewriter reads comes from the parser; no regular
expression ever looks for a block. A large file is first scanned for the spans of its top-level blocks
(`_scan`, which follows nesting, strings, heredocs and comments), and only its `terraform` and
`data "terraform_remote_state"` blocks are handed to the parser, each alone, positions moved back into
the file: a 5 MB file is then read in about a second instead of minutes.

`.tf.json` files are not HCL to python-hcl2, so they are read with a small recursive-descent walker that
uses the standard library's own JSON scanner (`json.JSONDecoder.raw_decode`, `json.decoder.scanstring`)
for every scalar and only tracks where each value starts and ends.

Tested with python-hcl2 8.x (grammar rule names `block`, `attribute`, `body`, `expr_term`, `string`,
`string_part`, `object`, `object_elem`, `object_elem_key`, `identifier`).
"""

from __future__ import annotations

import json
import json.decoder
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree
from lark.exceptions import LarkError

from runbook_lib.errors import HclError
from runbook_lib.hcl._scan import ScanError, Unsupported, scan_top_level


@dataclass
class Value:
    """One expression with its character span in the file text.

    `value` is the Python value when the expression is a literal (str, int, bool, None, or a dict of
    `Value` for an object); `literal` is False for anything computed (interpolation, reference, call),
    in which case `value` holds the expression's source text.
    """

    value: Any
    literal: bool
    start: int
    end: int

    def plain(self) -> Any:
        """The value with nested `Value` objects unwrapped (objects become dicts of plain values)."""
        if isinstance(self.value, dict):
            return {key: item.plain() for key, item in self.value.items()}
        if isinstance(self.value, list):
            return [item.plain() if isinstance(item, Value) else item for item in self.value]
        return self.value


@dataclass
class Block:
    """A block (`type "label" ... { body }`) or a JSON object standing for one, with spans.

    `start`/`end` cover the whole block, from its type keyword (HCL) or its member key (JSON) to the
    closing brace. `attrs` keeps each attribute's first definition; `duplicates` names any attribute
    defined twice, which Terraform rejects.
    """

    type: str
    labels: list[str]
    start: int
    end: int
    attrs: dict[str, Value] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def line_of(text: str, pos: int) -> int:
    """1-based line number of character offset `pos` in `text`."""
    return text.count("\n", 0, pos) + 1


def line_start(text: str, pos: int) -> int:
    """Offset of the first character of the line holding `pos`."""
    return text.rfind("\n", 0, pos) + 1


def newline_of(text: str) -> str:
    """The file's line ending: CRLF when its first line break is CRLF, else LF."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _parse_tree(text: str) -> Tree:
    # The raw Lark tree is the only python-hcl2 output that keeps character offsets.
    try:
        from hcl2.api import parses_to_tree
    except ImportError:  # python-hcl2 7.x: parses() returned the raw Lark tree
        from hcl2.api import parses as parses_to_tree  # type: ignore[no-redef]
    return parses_to_tree(text)


# Files up to this size are parsed in full (about 1 s at 64 KiB); larger ones are scanned (`_scan`) and only
# their blocks that can hold a backend or a remote-state source are parsed. Tests lower it to 0 to run the
# whole corpus through the scan.
FULL_PARSE_BYTES = 64 * 1024


def wanted(block_type: str, labels: list[str]) -> bool:
    """True for the top-level blocks the rewriter reads: `terraform`, `data "terraform_remote_state"`."""
    return block_type == "terraform" or (block_type == "data" and bool(labels)
                                         and labels[0] == "terraform_remote_state")


def parse_hcl(text: str, path: str) -> list[Block]:
    """Parse HCL text and return its `terraform` and `data "terraform_remote_state"` blocks with exact spans.

    A file larger than `FULL_PARSE_BYTES` is scanned for its top-level blocks first (`_scan`), and only those
    two kinds (and any data block whose labels the scan cannot decode) go through python-hcl2; the rest of the
    file is checked for balanced brackets and closed strings, heredocs and comments, not for the grammar of
    its expressions. A file the scan cannot follow (content at depth 0 that is not a block) is parsed in full.

    Args:
        text: the file's full text, line endings as on disk.
        path: the file name, for messages.

    Returns:
        Those top-level blocks in file order (other blocks and top-level attributes are left out: the
        rewriter never reads them).

    Raises:
        HclError: the text is not valid HCL (with line and column).
    """
    if len(text) > FULL_PARSE_BYTES:
        try:
            return _parse_scanned(text, path)
        except Unsupported:
            pass
    return [block for block in _parse_blocks(text, path, 0) if wanted(block.type, block.labels)]


def _parse_scanned(text: str, path: str) -> list[Block]:
    try:
        top = scan_top_level(text)
    except ScanError as exc:
        line = line_of(text, exc.pos)
        column = exc.pos - line_start(text, exc.pos) + 1
        opened = f", opened at line {line_of(text, exc.opened)}" if exc.opened is not None else ""
        raise HclError(f"{path} cannot be parsed as HCL at line {line}, column {column} ({exc}{opened}); "
                       f"fix the syntax (or run terraform fmt) before rewriting it.") from exc
    blocks = []
    for item in top:
        if wanted(item.type, item.labels) or (item.type == "data" and not item.plain_labels):
            blocks += [block for block in _parse_blocks(text, path, item.start, item.end)
                       if wanted(block.type, block.labels)]
    return blocks


def _parse_blocks(text: str, path: str, start: int, end: int | None = None) -> list[Block]:
    """Parse `text[start:end]` (the whole text, or one top-level block) with spans into `text`."""
    part = text if start == 0 and end is None else text[start:end] + "\n"
    try:
        tree = _parse_tree(part)
    except LarkError as exc:
        where = ""
        if getattr(exc, "line", None):
            # The parser counts in the part; the message counts in the file.
            first_line = line_of(text, start)
            column = exc.column + (start - line_start(text, start) if exc.line == 1 else 0)
            where = f" at line {exc.line + first_line - 1}, column {column}"
        raise HclError(f"{path} cannot be parsed as HCL{where}; fix the syntax (or run terraform fmt) "
                       f"before rewriting it.") from exc
    except (ValueError, RuntimeError) as exc:  # raised by python-hcl2's post-lexer on odd input
        raise HclError(f"{path} cannot be parsed as HCL ({exc}); fix the syntax before rewriting it.") from exc
    body = _child_tree(tree, "body")
    blocks = _body_blocks(body, part) if body is not None else []
    if start:
        for block in blocks:
            _shift_block(block, start)
    return blocks


def _shift_value(value: Value, delta: int) -> None:
    value.start += delta
    value.end += delta
    if isinstance(value.value, dict):
        for item in value.value.values():
            _shift_value(item, delta)


def _shift_block(block: Block, delta: int) -> None:
    """Move a block parsed from a slice of the file to its place in the file."""
    block.start += delta
    block.end += delta
    for value in block.attrs.values():
        _shift_value(value, delta)
    for inner in block.blocks:
        _shift_block(inner, delta)


def _child_tree(tree: Tree, name: str) -> Tree | None:
    for child in tree.children:
        if isinstance(child, Tree) and child.data == name:
            return child
    return None


def _body_blocks(body: Tree, text: str) -> list[Block]:
    blocks = []
    for child in body.children:
        if isinstance(child, Tree) and child.data == "block":
            blocks.append(_block(child, text))
    return blocks


def _identifier(tree: Tree) -> str:
    return "".join(str(tok) for tok in tree.scan_values(lambda v: isinstance(v, Token)))


def _block(tree: Tree, text: str) -> Block:
    name = ""
    labels: list[str] = []
    body = None
    for child in tree.children:
        if isinstance(child, Tree) and child.data == "identifier":
            if not name:
                name = _identifier(child)
            else:
                labels.append(_identifier(child))
        elif isinstance(child, Tree) and child.data == "string":
            value = _string_value(child, text)
            labels.append(value.value if value.literal else text[value.start:value.end])
        elif isinstance(child, Tree) and child.data == "body":
            body = child
    block = Block(type=name, labels=labels, start=tree.meta.start_pos, end=tree.meta.end_pos)
    if body is None:
        return block
    for child in body.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "block":
            block.blocks.append(_block(child, text))
        elif child.data == "attribute":
            key, value = _attribute(child, text)
            if key in block.attrs:
                block.duplicates.append(key)
            else:
                block.attrs[key] = value
    return block


def _attribute(tree: Tree, text: str) -> tuple[str, Value]:
    key = ""
    value = None
    for child in tree.children:
        if isinstance(child, Tree) and child.data in ("identifier", "keyword", "literal_value") and not key:
            key = _identifier(child)
        elif isinstance(child, Tree) and child.data == "expr_term":
            value = _expression(child, text)
    if value is None:  # the grammar always has an expression; keep the span honest anyway
        value = Value(None, False, tree.meta.end_pos, tree.meta.end_pos)
    return key, value


def _expression(tree: Tree, text: str) -> Value:
    """Value of an expression: literal when it is a plain string, number, bool, null or object of those."""
    start, end = tree.meta.start_pos, tree.meta.end_pos
    inner = tree
    # expr_term wraps its content; a parenthesised or bare literal sits one level down.
    while isinstance(inner, Tree) and inner.data == "expr_term" and len(inner.children) == 1 \
            and isinstance(inner.children[0], Tree):
        inner = inner.children[0]
    if isinstance(inner, Tree):
        if inner.data == "string":
            value = _string_value(inner, text)
            return Value(value.value, value.literal, start, end)
        if inner.data == "object":
            return _object_value(inner, text, start, end)
        if inner.data in ("int_lit", "float_lit"):
            raw = text[start:end]
            try:
                return Value(int(raw) if inner.data == "int_lit" else float(raw), True, start, end)
            except ValueError:
                return Value(raw, False, start, end)
        if inner.data == "literal_value" and inner.children and isinstance(inner.children[0], Token):
            keyword = inner.children[0].type
            if keyword in ("TRUE", "FALSE", "NULL"):
                return Value({"TRUE": True, "FALSE": False, "NULL": None}[keyword], True, start, end)
    return Value(text[start:end], False, start, end)


def _string_value(tree: Tree, text: str) -> Value:
    from hcl2.utils import process_escape_sequences

    parts: list[str] = []
    literal = True
    for child in tree.children:
        if isinstance(child, Tree) and child.data == "string_part":
            for token in child.children:
                if isinstance(token, Token) and token.type == "STRING_CHARS":
                    parts.append(process_escape_sequences(str(token)))
                elif isinstance(token, Token) and token.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                    parts.append(str(token)[1:])  # "$${" is a literal "${"
                else:
                    literal = False
    start, end = tree.meta.start_pos, tree.meta.end_pos
    if not literal:
        return Value(text[start:end], False, start, end)
    return Value("".join(parts), True, start, end)


def _object_value(tree: Tree, text: str, start: int, end: int) -> Value:
    items: dict[str, Value] = {}
    literal = True
    for child in tree.children:
        if not (isinstance(child, Tree) and child.data == "object_elem"):
            continue
        key = None
        value = None
        for part in child.children:
            if isinstance(part, Tree) and part.data == "object_elem_key":
                key_value = _expression(part.children[0], text) if isinstance(part.children[0], Tree) \
                    and part.children[0].data == "expr_term" else None
                if key_value is not None and key_value.literal:
                    key = str(key_value.value)
                else:
                    # A bare identifier key (`name = ...`) is a name, not a reference, in an object key.
                    key = text[part.meta.start_pos:part.meta.end_pos].strip()
            elif isinstance(part, Tree) and part.data == "expr_term":
                value = _expression(part, text)
        if key is None or value is None:
            literal = False
            continue
        items.setdefault(key, value)
    return Value(items, literal, start, end)


# ---------------------------------------------------------------------------------------------------
# JSON with positions
# ---------------------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


@dataclass
class JsonMember:
    """One `"key": value` member of a JSON object: where the key starts, and the value."""

    key: str
    key_start: int
    value: Value


def parse_json(text: str, path: str) -> Value:
    """Parse JSON text into `Value`s whose objects map keys to lists of `JsonMember` with spans.

    Args:
        text: the file's full text.
        path: the file name, for messages.

    Returns:
        The top-level value; objects have `value` = dict key -> list of JsonMember (a key may repeat).

    Raises:
        HclError: the text is not valid JSON.
    """
    try:
        value, pos = _json_value(text, _skip(text, 0))
        pos = _skip(text, pos)
        if pos != len(text):
            raise ValueError(f"extra data at offset {pos}")
    except (ValueError, IndexError) as exc:
        line = line_of(text, getattr(exc, "pos", 0) or 0)
        raise HclError(f"{path} is not valid JSON near line {line} ({exc}); fix it before rewriting it.") from exc
    return value


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _after_item(text: str, after: int, closer: str) -> tuple[int, bool]:
    """After an object member or array item: (where the next one starts, False) or (past `closer`, True)."""
    cur = _skip(text, after)
    if text[cur] == ",":
        return _skip(text, cur + 1), False
    if text[cur] == closer:
        return cur + 1, True
    raise json.JSONDecodeError(f"expected ',' or '{closer}'", text, cur)


def _json_value(text: str, pos: int) -> tuple[Value, int]:
    char = text[pos]
    if char == "{":
        members: dict[str, list[JsonMember]] = {}
        cur = _skip(text, pos + 1)
        done = text[cur] == "}"
        cur += done
        while not done:
            if text[cur] != '"':
                raise json.JSONDecodeError("expected a string key", text, cur)
            key, after_key = json.decoder.scanstring(text, cur + 1)
            colon = _skip(text, after_key)
            if text[colon] != ":":
                raise json.JSONDecodeError("expected ':'", text, colon)
            item, after = _json_value(text, _skip(text, colon + 1))
            members.setdefault(key, []).append(JsonMember(key, cur, item))
            cur, done = _after_item(text, after, "}")
        return Value(members, True, pos, cur), cur
    if char == "[":
        items: list[Value] = []
        cur = _skip(text, pos + 1)
        done = text[cur] == "]"
        cur += done
        while not done:
            item, after = _json_value(text, cur)
            items.append(item)
            cur, done = _after_item(text, after, "]")
        return Value(items, True, pos, cur), cur
    scalar, end = _DECODER.raw_decode(text, pos)
    return Value(scalar, True, pos, end), end


def json_objects(value: Value) -> list[Value]:
    """Terraform JSON allows an object or a list of objects wherever a block may repeat; flatten that."""
    if isinstance(value.value, dict):
        return [value]
    if isinstance(value.value, list):
        return [item for item in value.value if isinstance(item.value, dict)]
    return []


def json_plain(value: Value) -> Any:
    """The plain Python value of a positioned JSON value."""
    if isinstance(value.value, dict):
        return {key: json_plain(members[0].value) for key, members in value.value.items()}
    if isinstance(value.value, list):
        return [json_plain(item) for item in value.value]
    return value.value
