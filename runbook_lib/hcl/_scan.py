"""A fast structural scan of HCL native syntax: where each top-level block starts and ends.

Why: python-hcl2's parser is exact but slow (minutes and most of a GB for a 5 MB file), and only two
kinds of top-level block matter to the rewriter: `terraform` (which holds `backend` / `cloud`) and
`data "terraform_remote_state"`. This scanner walks the whole file once with a few regular expressions that
recognise the lexical layer of the language (comments, quoted strings with their `${...}` / `%{...}`
interpolations, heredocs, brackets); it does not look for blocks by pattern: a block is whatever stands at
nesting depth 0 in front of a `{`. So `terraform {` inside a heredoc, a string or a comment is never taken
for a block, and a block is found wherever it is in the file. The blocks it selects are then parsed in
full by python-hcl2 (`_syntax.parse_hcl`).

The lexical rules follow python-hcl2's grammar (`hcl2.lark`, python-hcl2 8.x), which is what a full parse
would accept:
- comments: `#...` and `//...` to the end of the line, `/* ... */` (`NL_OR_COMMENT`);
- quoted strings may span lines; `\\x` escapes one character; `${` and `%{` open a template sequence
  closed by the matching `}`; `$${` and `%%{` are literal (`STRING_CHARS`, `ESCAPED_INTERPOLATION`);
- heredocs: `<<MARKER` or `<<-MARKER` at the end of a line, closed by the first later line holding only
  MARKER after optional indentation (`HEREDOC_TEMPLATE`, `HEREDOC_TEMPLATE_TRIM`);
- a block is `type label* {`, labels identifiers or quoted strings, the brace possibly on the next line.

What it proves about the rest of the file: every bracket is balanced and of the right kind, every string,
heredoc and comment is closed, and depth 0 holds only blocks. What it does not: the expressions inside
blocks it does not select (an `a = = 1` deep in a resource). `Unsupported` tells the caller to fall back to
a full parse (a top-level attribute, or anything else at depth 0 that is not a block header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# In code (outside strings): the tokens that change the nesting or hide brackets from it, after a run of
# characters that can be none of them (consumed in one possessive repeat, so the engine does not try every
# alternative at every offset). A quoted string without nested quotes or braces inside its template
# sequences is taken in one match (the common case); any other string is walked by _STRING. `end` matches
# at the end of the text; `other` is a `<<` that opens no heredoc (a syntax error a full parse reports).
_CODE = re.compile(
    r'(?:[^"#/<{}\[\]()]++|/(?![/*])|<(?!<))*+'
    r'(?:(?P<simple>"(?:[^"\\$%]++|\\.|\$(?!\{)|%(?!\{)|\$\{[^{}"]*+\}|%\{[^{}"]*+\})*+")'
    r'|(?P<quote>")'
    r'|(?P<line_comment>#[^\n]*+|//[^\n]*+)'
    r'|(?P<block_comment>/\*)'
    r'|(?P<heredoc><<-?(?P<marker>[a-zA-Z][a-zA-Z0-9._-]*+)\r?\n)'
    r'|(?P<open>[{\[(])'
    r'|(?P<close>[}\])])'
    r'|(?P<other><<)'
    r'|(?P<end>\Z))')
# Inside a quoted string: an escape, a literal `$${` / `%%{`, a template sequence, or the closing quote.
_STRING = re.compile(r'\\.|\$\$\{|%%\{|\$\{|%\{|"')
# What may stand between tokens at depth 0: whitespace and identifiers (block types and bare labels).
_GAP = re.compile(r'\s*+(?:[A-Za-z_][A-Za-z0-9_-]*+\s*+)*+')
_IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_-]*')
_CLOSES = {"{": "}", "[": "]", "(": ")", "${": "}"}


class ScanError(Exception):
    """The text is not HCL: a bracket, string, heredoc or comment is not closed (or closed wrongly)."""

    def __init__(self, message: str, pos: int, opened: int | None = None) -> None:
        super().__init__(message)
        self.pos = pos
        self.opened = opened


class Unsupported(Exception):
    """Depth 0 holds something other than blocks; the caller parses the file in full instead."""


@dataclass
class TopBlock:
    """One top-level block: its type, its labels (decoded when plain, else their source text), its span.

    `plain_labels` is False when a label is a string with escapes or template sequences, whose value the
    scanner does not decode: such a block may be anything and is parsed in full by the caller.
    """

    type: str
    labels: list[str]
    start: int
    end: int
    plain_labels: bool = True


def _heredoc_end(text: str, marker: str, pos: int) -> int:
    """Offset just after the line closing the heredoc that starts at `pos`, or -1."""
    closing = re.compile(r"^[ \t]*" + re.escape(marker) + r"\r?$", re.M)
    found = closing.search(text, pos)
    return -1 if found is None else found.end()


def _label(source: str) -> tuple[str, bool]:
    """The value of a label token and whether it is plain (an identifier, or a string without escapes)."""
    if not source.startswith('"'):
        return source, True
    inner = source[1:-1]
    if "\\" in inner or "${" in inner or "%{" in inner:
        return source, False
    return inner, True


def scan_top_level(text: str) -> list[TopBlock]:
    """Every top-level block of HCL `text`, in file order.

    Raises:
        ScanError: a bracket, string, heredoc or comment is unbalanced or unclosed (`pos` says where).
        Unsupported: depth 0 holds an attribute or other non-block content.
    """
    blocks: list[TopBlock] = []
    stack: list[tuple[str, int]] = []  # (opener, offset): "{", "[", "(" or "${" (a template sequence)
    header: list[tuple[str, int]] = []  # depth 0: the block type and labels read so far, with offsets
    pos = 0
    match_code = _CODE.match
    while True:
        found = match_code(text, pos)
        kind = found.lastgroup
        start = found.start(kind)
        if not stack:
            gap_end = start
            if gap_end > pos:
                gap = text[pos:gap_end]
                if _GAP.fullmatch(gap) is None:
                    raise Unsupported(f"non-block content at offset {pos}")
                for word in _IDENT.finditer(gap):
                    header.append((word.group(), pos + word.start()))
        if kind == "end":
            break
        pos = found.end()
        if kind == "simple":
            if not stack:
                if not header:
                    raise Unsupported(f"a string at depth 0, offset {start}")
                header.append((found.group(kind), start))
        elif kind == "open":
            char = found.group(kind)
            if not stack and char == "{":
                if not header or header[0][0].startswith('"'):
                    raise Unsupported(f"a brace without a block type at offset {start}")
            elif not stack:
                raise Unsupported(f"an expression at depth 0, offset {start}")
            stack.append((char, start))
        elif kind == "close":
            char = found.group(kind)
            if not stack:
                raise ScanError(f"'{char}' closes nothing", start)
            opener, opened = stack.pop()
            if _CLOSES[opener] != char:
                raise ScanError(f"'{char}' does not close the '{opener}' before it", start, opened)
            if opener == "${":
                pos = _string_rest(text, pos, stack)
            elif not stack:
                labels = [_label(source) for source, _ in header[1:]]
                blocks.append(TopBlock(header[0][0], [value for value, _ in labels], header[0][1], pos,
                                       all(plain for _, plain in labels)))
                header = []
        elif kind == "line_comment" or kind == "other":
            pass
        elif kind == "block_comment":
            close = text.find("*/", pos)
            if close < 0:
                raise ScanError("a /* comment is never closed", start)
            pos = close + 2
        elif kind == "quote":
            if not stack:
                raise Unsupported(f"a template string at depth 0, offset {start}")
            pos = _string_rest(text, pos, stack, start)
        else:  # heredoc
            if not stack:
                raise Unsupported(f"a heredoc at depth 0, offset {start}")
            end = _heredoc_end(text, found.group("marker"), pos)
            if end < 0:
                raise ScanError(f"the heredoc <<{found.group('marker')} is never closed", start)
            pos = end
    if stack:
        opener, opened = stack[-1]
        raise ScanError(f"'{opener}' is never closed", opened)
    if header:
        raise ScanError(f"{header[0][0]!r} is not followed by a block", header[0][1])
    return blocks


def _string_rest(text: str, pos: int, stack: list[tuple[str, int]], opened: int | None = None) -> int:
    """Walk a quoted string from `pos` (inside it) to its closing quote or its next template sequence.

    Returns the offset after the closing quote, or after `${` / `%{` (pushed on `stack`: its `}` resumes
    the string).
    """
    search = _STRING.search
    while True:
        found = search(text, pos)
        if found is None:
            raise ScanError("a quoted string is never closed", pos if opened is None else opened)
        token = found.group()
        pos = found.end()
        if token == '"':
            return pos
        if token in ("${", "%{"):
            stack.append(("${", found.start()))
            return pos
