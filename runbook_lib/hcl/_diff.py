"""Unified diffs of large texts that differ in a few places, as difflib would print them.

difflib's matcher compares every line with every other: on a 5 MB file with one edited line it runs for
minutes. Here the identical lines before the first change and after the last are cut off first; when the
lines between several changes number the same in both texts (edits that replace text within lines, as a
remote-state rewrite does), each change is diffed apart with its surroundings. difflib then sees a few
dozen lines, and the hunk headers are moved back to the file's line numbers.
"""

from __future__ import annotations

import difflib

_CHUNK = 1 << 16
# Between two changes more identical lines than this make separate pieces (difflib itself joins hunks
# closer than twice the context).
_SPLIT_LINES = 32


def _common_prefix(old: str, old_at: int, new: str, new_at: int, limit: int) -> int:
    """How many characters from `old_at` and `new_at` are identical (at most `limit`), a chunk at a time."""
    size = 0
    while size + _CHUNK <= limit and old[old_at + size:old_at + size + _CHUNK] == new[new_at + size:new_at + size + _CHUNK]:
        size += _CHUNK
    while size < limit and old[old_at + size] == new[new_at + size]:
        size += 1
    return size


def _common_suffix(old: str, new: str, floor: int) -> int:
    """Length of the longest common suffix leaving at least `floor` characters of each text before it."""
    limit = min(len(old), len(new)) - floor
    size = 0
    while size + _CHUNK <= limit and \
            old[len(old) - size - _CHUNK:len(old) - size] == new[len(new) - size - _CHUNK:len(new) - size]:
        size += _CHUNK
    while size < limit and old[len(old) - size - 1] == new[len(new) - size - 1]:
        size += 1
    return size


def _at_line_start(text: str, pos: int) -> bool:
    return pos == 0 or text[pos - 1] == "\n"


def _line_end(text: str, pos: int, stop: int) -> int:
    found = text.find("\n", pos, stop)
    return stop if found < 0 else found + 1


def _lines_back(text: str, pos: int, count: int, floor: int) -> int:
    for _ in range(count):
        if pos <= floor:
            return floor
        pos = text.rfind("\n", floor, pos - 1) + 1 or floor
    return max(pos, floor)


def _lines_forward(text: str, pos: int, count: int, ceiling: int) -> int:
    for _ in range(count):
        if pos >= ceiling:
            return ceiling
        pos = _line_end(text, pos, ceiling)
    return pos


def unified_diff(old: str, new: str, fromfile: str, tofile: str, context: int = 3) -> list[str]:
    """The lines of `difflib.unified_diff(old lines, new lines, fromfile, tofile, n=context)`.

    Repeated lines may be aligned otherwise than difflib aligns them on whole files; the diff is correct
    either way (it turns `old` into `new`).
    """
    head = old.rfind("\n", 0, _common_prefix(old, 0, new, 0, min(len(old), len(new)))) + 1
    tail_old = len(old) - _common_suffix(old, new, head)
    tail_new = tail_old - len(old) + len(new)
    if not (_at_line_start(old, tail_old) and _at_line_start(new, tail_new)):
        tail_old = _line_end(old, tail_old, len(old))  # whole lines, identical in both texts, after the change
        tail_new = tail_old - len(old) + len(new)
    if head == tail_old and head == tail_new:
        return []
    pieces = [(head, tail_old, head, tail_new)]
    if old.count("\n", head, tail_old) == new.count("\n", head, tail_new) > 4 * _SPLIT_LINES:
        pieces = _pieces(old, new, head, tail_old, tail_new)
    hunks = []
    for index, (old_from, old_to, new_from, new_to) in enumerate(pieces):
        floor = (pieces[index - 1][1], pieces[index - 1][3]) if index else (0, 0)
        ceiling = (pieces[index + 1][0], pieces[index + 1][2]) if index + 1 < len(pieces) else (len(old), len(new))
        hunks += _hunks(old, new, (old_from, old_to, new_from, new_to), floor, ceiling, context)
    return [f"--- {fromfile}\n", f"+++ {tofile}\n", *hunks]


def _pieces(old: str, new: str, head: int, tail_old: int, tail_new: int) -> list[tuple[int, int, int, int]]:
    """The changed lines between `head` and the tails, line by line, grouped when close together.

    Only called when both texts hold as many lines there, so line k of one stands against line k of the other.
    """
    pieces: list[list[int]] = []
    old_at, new_at = head, head
    while old_at < tail_old:
        same = _common_prefix(old, old_at, new, new_at, min(tail_old - old_at, tail_new - new_at))
        found = old.rfind("\n", old_at, old_at + same)
        skip = 0 if found < 0 else found + 1 - old_at  # whole identical lines
        old_at, new_at = old_at + skip, new_at + skip
        if old_at >= tail_old:
            break
        old_end, new_end = _line_end(old, old_at, tail_old), _line_end(new, new_at, tail_new)
        if pieces and old.count("\n", pieces[-1][1], old_at) <= _SPLIT_LINES:
            pieces[-1][1], pieces[-1][3] = old_end, new_end
        else:
            pieces.append([old_at, old_end, new_at, new_end])
        old_at, new_at = old_end, new_end
    return [tuple(piece) for piece in pieces]  # type: ignore[misc]


def _hunks(old: str, new: str, piece: tuple[int, int, int, int], floor: tuple[int, int],
           ceiling: tuple[int, int], context: int) -> list[str]:
    old_from, old_to, new_from, new_to = piece
    margin = context
    while True:
        old_start = _lines_back(old, old_from, margin, floor[0])
        new_start = _lines_back(new, new_from, margin, floor[1])
        old_end = _lines_forward(old, old_to, margin, ceiling[0])
        new_end = _lines_forward(new, new_to, margin, ceiling[1])
        a = old[old_start:old_end].splitlines(keepends=True)
        b = new[new_start:new_end].splitlines(keepends=True)
        groups = list(difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(context))
        # Repeated lines can put difflib's change beyond the cut: a hunk touching a cut edge lacks context
        # there, so the cut is widened until none does (or it reaches the neighbouring piece).
        short_before = groups and groups[0][0][1] == 0 and old_start > floor[0]
        short_after = groups and groups[-1][-1][2] == len(a) and old_end < ceiling[0]
        if not (short_before or short_after):
            break
        margin *= 4
    old_offset, new_offset = old.count("\n", 0, old_start), new.count("\n", 0, new_start)
    lines = []
    for line in list(difflib.unified_diff(a, b, n=context))[2:]:
        if line.startswith("@@ -"):
            old_range, new_range = line[4:line.index(" @@")].split(" +")
            line = f"@@ -{_moved(old_range, old_offset)} +{_moved(new_range, new_offset)} @@\n"
        lines.append(line)
    return lines


def _moved(hunk_range: str, offset: int) -> str:
    first, _, length = hunk_range.partition(",")
    return f"{int(first) + offset},{length}" if length else str(int(first) + offset)
