"""Finding tokens where they must not be: one scanner for evidence, ledger rows and archives.

Three kinds of finding: the exact values of the tokens in use (read from the environment variables
whose names the settings and the batch's parameters hold, and the sensitive-variable values under
`TFE_RUNBOOK_VAR_*`), anything shaped like a Terraform Enterprise API token (`<id>.atlasv1.<secret>`),
and other well-known credential shapes (VCS provider tokens, cloud access keys, private keys), so a token
from another shell or an old run is caught as well.

`credential_shape` tells whether a string where a variable *name* belongs is a credential instead
(those prefixes, or a long high-entropy string); `url_credential_problem` whether a URL-valued parameter or
setting carries a credential in its user info (``https://oauth2:<password>@gitlab.example.com``), which would
be written into every notebook, its HTML copy and the manifest.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

from runbook_lib.errors import ConfigError

_TOKEN_PATTERN = r"[A-Za-z0-9]{6,}\.atlasv1\.[A-Za-z0-9_\-]{16,}"
TOKEN_SHAPE = re.compile(_TOKEN_PATTERN.encode())
_TOKEN_SHAPE_TEXT = re.compile(_TOKEN_PATTERN)
DEFAULT_TOKEN_VARS = ("ATLAS_TOKEN", "TFE_TOKEN", "VCS_OAUTH_TOKEN")
DEFAULT_SENSITIVE_PREFIX = "TFE_RUNBOOK_VAR_"
REDACTED = "[REDACTED]"
#: Shapes of other credentials, by their documented prefixes: GitHub (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_),
#: GitLab (glpat-, gloas-), Bitbucket app passwords (ATBB), Slack (xoxb-/xoxp-/...), AWS access key ids
#: (AKIA/ASIA) and PEM private keys. Hashes and UUIDs (lineages, sha256 sums) match none of them.
#: Each stands alone (no letter, digit, '/' or '+' right before it), so base64 blobs (fonts, images in HTML) do not
#: match by chance.
_CREDENTIAL_PATTERNS = tuple(r"(?<![A-Za-z0-9/+])" + p for p in (
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"gl(?:pat|oas)-[A-Za-z0-9_\-]{20,}",
    r"ATBB[A-Za-z0-9]{24,}",
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
)) + (r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",)
CREDENTIAL_SHAPE = re.compile("|".join(_CREDENTIAL_PATTERNS).encode())
_CREDENTIAL_SHAPE_TEXT = re.compile("|".join(_CREDENTIAL_PATTERNS))


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


def token_var_names(parameters: Mapping[str, object] | None = None,
                    environ: Mapping[str, str] | None = None) -> list[str]:
    """Every environment variable whose value a batch could have seen as a secret.

    The defaults (`DEFAULT_TOKEN_VARS`), the value of every ``*_token_var`` parameter, and every variable
    starting with the sensitive-variable prefix (``TFE_RUNBOOK_VAR_``, or the ``sensitive_var_prefix``
    parameter).

    Args:
        parameters: the batch's notebook parameters (names of variables, never values).
        environ: the environment (os.environ by default).
    """
    env = os.environ if environ is None else environ
    params = dict(parameters or {})
    names = list(DEFAULT_TOKEN_VARS)
    names += [str(v) for k, v in params.items() if k.endswith("_token_var") and isinstance(v, str) and v]
    prefixes = {DEFAULT_SENSITIVE_PREFIX, str(params.get("sensitive_var_prefix") or DEFAULT_SENSITIVE_PREFIX)}
    names += sorted(n for n in env if any(n.startswith(p) for p in prefixes))
    return list(dict.fromkeys(names))


def all_tokens_in_use(parameters: Mapping[str, object] | None = None,
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of every variable `token_var_names` lists (8 characters or more)."""
    return tokens_in_use(token_var_names(parameters, environ), environ)


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def credential_shape(value: str) -> str | None:
    """What kind of credential `value` looks like, or None; never returns the value itself.

    Used where a variable *name* belongs: a TFE/Atlas token (``atlasv1``), a known provider token prefix,
    or a long high-entropy string (20+ characters mixing cases and digits, or 32+ hex digits), which no
    environment variable is named like.
    """
    value = value.strip()
    if _TOKEN_SHAPE_TEXT.search(value) or ".atlasv1." in value:
        return "a Terraform Enterprise token"
    if _CREDENTIAL_SHAPE_TEXT.search(value):
        return "a VCS or cloud credential"
    if re.fullmatch(r"[0-9a-fA-F]{32,}", value):
        return "a long hexadecimal secret"
    mixed = re.search(r"[a-z]", value) and re.search(r"[A-Z]", value) and re.search(r"[0-9]", value)
    if len(value) >= 20 and mixed and _entropy(value) >= 3.5:
        return "a long random string"
    return None


#: `scheme://` at the start of a value: the value is a URL (`git_base_url`, `vcs_http_url`, an address).
_URL_START = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://")
#: The schemes whose user info is a login name rather than a secret (`ssh://git@github.com/org`).
_LOGIN_SCHEMES = ("ssh", "git+ssh", "ssh+git")


def url_credential_problem(what: str, value: object) -> str | None:
    """One sentence refusing a URL that carries a credential in its user info, or None when it carries none.

    Refused: any URL with a password (``scheme://user:secret@host``), and any user info at all on a scheme
    other than ssh (``https://<token>@github.com``, ``https://oauth2:<password>@gitlab.example.com``): on
    https the user name is itself often the token. An ssh login name alone (``ssh://git@host``) is no secret.
    A backslash before the ``@`` counts too (``http://h\\@other``: parsers disagree on where the host is). The
    sentence never repeats the value.

    Args:
        what: how to name the parameter or setting in the sentence (``--param git_base_url``).
        value: its value; anything but text is never a URL.

    Returns:
        The sentence, or None.
    """
    if not isinstance(value, str) or not _URL_START.match(value):
        return None
    scheme, rest = value.strip().split("://", 1)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in authority:
        return None
    userinfo = authority.rsplit("@", 1)[0]
    if scheme.lower() in _LOGIN_SCHEMES and ":" not in userinfo and "\\" not in userinfo:
        return None
    return (f"{what} carries a credential in its URL (user info before '@'), which would be written into the "
            f"notebooks, their HTML copies and the manifest (the value is not repeated here): give the URL without "
            f"it, and let a git credential helper supply the password for clone URLs, or the token variable "
            f"(vcs_token_var, TFE_TOKEN, ATLAS_TOKEN) for the hosts.")


def refuse_url_credential(what: str, value: object) -> None:
    """Raise `ConfigError` with `url_credential_problem`'s sentence when `value` carries a credential.

    Raises:
        ConfigError: the URL has user info that may be a secret.
    """
    problem = url_credential_problem(what, value)
    if problem:
        raise ConfigError(problem)


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
            seen.add(match.start())
    for match in CREDENTIAL_SHAPE.finditer(data):
        if match.start() not in seen:
            findings.append(SecretFinding(where, match.start(), "credential-shaped string"))
    return sorted(findings, key=lambda f: f.offset)


def redact(text: str, tokens: Iterable[str] = ()) -> str:
    """Replace tokens in use and token-shaped strings in `text` with [REDACTED]."""
    for token in tokens:
        if token:
            text = text.replace(token, REDACTED)
    return _CREDENTIAL_SHAPE_TEXT.sub(REDACTED, _TOKEN_SHAPE_TEXT.sub(REDACTED, text))
