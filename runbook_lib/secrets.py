"""Finding tokens where they must not be: one scanner for evidence, ledger rows and archives.

Two kinds of finding: the exact values of the tokens in use (read from the environment variables
whose names the settings hold) and anything shaped like a Terraform Enterprise API token
(`<id>.atlasv1.<secret>`), so a token from another shell or an old run is caught as well.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

_TOKEN_PATTERN = r"[A-Za-z0-9]{6,}\.atlasv1\.[A-Za-z0-9_\-]{16,}"
TOKEN_SHAPE = re.compile(_TOKEN_PATTERN.encode())
_TOKEN_SHAPE_TEXT = re.compile(_TOKEN_PATTERN)
DEFAULT_TOKEN_VARS = ("ATLAS_TOKEN", "TFE_TOKEN")
REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class SecretFinding:
    """Where a secret was found; `kind` is "token in use" or "token-shaped string". Holds no secret."""

    where: str
    offset: int
    kind: str


def tokens_in_use(var_names: Iterable[str] = DEFAULT_TOKEN_VARS,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the named token variables that are set (empty and very short values are ignored)."""
    env = os.environ if environ is None else environ
    return [env[name].strip() for name in var_names if len(env.get(name, "").strip()) >= 8]


def scan_bytes(data: bytes, where: str, tokens: Iterable[str] = ()) -> list[SecretFinding]:
    """Find tokens in use and token-shaped strings in `data`.

    Args:
        data: the bytes to search.
        where: a label for the findings (a file path, "ledger row 12").
        tokens: exact token values to look for.

    Returns:
        One finding per occurrence, ordered by offset; empty when clean.
    """
    findings: list[SecretFinding] = []
    for token in tokens:
        needle = token.encode()
        start = data.find(needle)
        while start != -1:
            findings.append(SecretFinding(where, start, "token in use"))
            start = data.find(needle, start + 1)
    seen = {f.offset for f in findings}
    for match in TOKEN_SHAPE.finditer(data):
        if match.start() not in seen:
            findings.append(SecretFinding(where, match.start(), "token-shaped string"))
    return sorted(findings, key=lambda f: f.offset)


def redact(text: str, tokens: Iterable[str] = ()) -> str:
    """Replace tokens in use and token-shaped strings in `text` with [REDACTED]."""
    for token in tokens:
        if token:
            text = text.replace(token, REDACTED)
    return _TOKEN_SHAPE_TEXT.sub(REDACTED, text)
