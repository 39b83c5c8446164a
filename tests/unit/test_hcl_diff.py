"""`rewrite.unified_diff`: difflib's diff computed around the change only, with the file's line numbers."""

from __future__ import annotations

import difflib
import random
import re

from runbook_lib.hcl._diff import unified_diff


def _patched(old: str, patch: list[str]) -> str:
    """Apply a unified diff to `old` (enough of patch(1) to check a diff is right)."""
    lines, out, pos = old.splitlines(keepends=True), [], 0
    for line in patch[2:]:
        if line.startswith("@@"):
            first, length = re.match(r"@@ -(\d+)(?:,(\d+))? ", line).groups()
            start = int(first) if length == "0" else int(first) - 1
            out += lines[pos:start]
            pos = start
        elif line.startswith(" "):
            assert lines[pos] == line[1:]
            out.append(lines[pos])
            pos += 1
        elif line.startswith("-"):
            assert lines[pos] == line[1:]
            pos += 1
        elif line.startswith("+"):
            out.append(line[1:])
    return "".join(out + lines[pos:])


def test_one_change_in_a_large_file_is_difflibs_hunk_with_the_files_line_numbers():
    old = "".join(f'resource "null_resource" "r{i}" {{\n  x = "{i}"\n}}\n\n' for i in range(20000))
    new = old.replace('  x = "12345"\n', '  x = "changed"\n')
    patch = unified_diff(old, new, "a/main.tf", "b/main.tf")
    assert patch == list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/main.tf", "b/main.tf"))
    assert patch[2] == "@@ -49379,7 +49379,7 @@\n"


def test_random_edits_give_a_diff_that_patches_old_into_new():
    rng = random.Random(17)
    pool = ["a\n", "}\n", "  x = 1\n", "\n"]
    same = 0
    for _ in range(1500):
        lines = [rng.choice(pool) for _ in range(rng.randint(0, 30))] + (["tail"] if rng.random() < 0.3 else [])
        old = "".join(lines)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(lines))
            roll = rng.random()
            if roll < 0.4 and at < len(lines):
                lines[at] = "changed\n"
            elif roll < 0.7:
                lines.insert(at, "new\n")
            elif at < len(lines):
                del lines[at]
        new = "".join(lines)
        if new == old:
            continue
        patch = unified_diff(old, new, "a/f", "b/f")
        assert _patched(old, patch) == new
        same += patch == list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/f", "b/f"))
    assert same >= 1400  # repeated lines may be aligned otherwise; the result is still a correct diff


def test_new_file_and_missing_final_newline():
    assert unified_diff("", "a\nb", "/dev/null", "b/f") == ["--- /dev/null\n", "+++ b/f\n", "@@ -0,0 +1,2 @@\n",
                                                           "+a\n", "+b"]
    assert unified_diff("a\nb", "a\nc", "a/f", "b/f")[2:] == ["@@ -1,2 +1,2 @@\n", " a\n", "-b", "+c"]


def test_edits_far_apart_in_a_large_file_are_diffed_apart_as_difflib_does():
    old = "".join(f'data "terraform_remote_state" "s{i}" {{\n  config {{\n    name = "legacy/s{i % 7}"\n  }}\n}}\n'
                  for i in range(600))
    new = old.replace('"legacy/s3"', '"acme/s3-renamed"')
    patch = unified_diff(old, new, "a/main.tf", "b/main.tf")
    assert patch == list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/main.tf", "b/main.tf"))
    assert sum(line.startswith("@@") for line in patch) == old.count('"legacy/s3"')
