"""Where the runbook finds hosts, tokens, CA bundles and terraform binaries.

Tokens are never settings themselves: a setting holds the *name* of the environment variable that
holds the token (``ATLAS_TOKEN`` and ``TFE_TOKEN`` by default), so notebook parameters, logs and the
ledger only ever see names. `Settings.token()` reads the value at the moment of use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Mapping

from runbook_lib.errors import ConfigError
from runbook_lib.secrets import credential_shape, url_credential_problem

DEFAULT_LEGACY_TOKEN_VAR = "ATLAS_TOKEN"
DEFAULT_TFE_TOKEN_VAR = "TFE_TOKEN"
DEFAULT_LEGACY_ADDRESS_VAR = "ATLAS_ADDRESS"
DEFAULT_TFE_ADDRESS_VAR = "TFE_ADDRESS"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# C0 controls, DEL and C1 controls: never part of a token, and fatal (or worse, header-splitting) in a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MIB = 1024 * 1024
#: The transport's bounds, each settable by an environment variable (see `Settings`): name -> (attribute, kind,
#: factor from the variable's unit to the attribute's).
LIMIT_VARS = {
    "TFE_RUNBOOK_REQUEST_DEADLINE": ("request_deadline", float, 1),
    "TFE_RUNBOOK_MAX_ANSWER_MB": ("max_answer_bytes", float, _MIB),
    "TFE_RUNBOOK_MAX_DOWNLOAD_MB": ("max_download_bytes", float, _MIB),
    "TFE_RUNBOOK_MAX_PAGES": ("max_pages", int, 1),
}


@dataclass(frozen=True)
class Settings:
    """Connection settings for both APIs.

    Attributes:
        legacy_address: base URL of the legacy host (``https://host[:port]``), no path.
        tfe_address: base URL of the new TFE host.
        legacy_token_var: name of the environment variable holding the legacy (Atlas) token.
        tfe_token_var: name of the environment variable holding the new TFE token.
        ca_bundle: path of a PEM bundle for private CAs, or None for the system store.
            TLS verification is never turned off.
        connect_timeout / read_timeout: seconds (one connection attempt; one wait for the next bytes).
        request_deadline: seconds one request may take in all, retries, redirects and the whole body included
            (``TFE_RUNBOOK_REQUEST_DEADLINE``): a host trickling its answer is cut here.
        max_answer_bytes: the largest API answer read (JSON and JSON:API documents, error answers), in bytes
            (``TFE_RUNBOOK_MAX_ANSWER_MB``, in MiB).
        max_download_bytes: the largest download read (state files, plan logs: requests that accept any
            type), in bytes (``TFE_RUNBOOK_MAX_DOWNLOAD_MB``, in MiB).
        max_pages: the most pages one listing may read (``TFE_RUNBOOK_MAX_PAGES``).
        terraform_bin: the operator's terraform executable for the CLI path (None: not configured).
    """

    legacy_address: str = ""
    tfe_address: str = ""
    legacy_token_var: str = DEFAULT_LEGACY_TOKEN_VAR
    tfe_token_var: str = DEFAULT_TFE_TOKEN_VAR
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    request_deadline: float = 300.0
    max_answer_bytes: int = 64 * _MIB
    max_download_bytes: int = 512 * _MIB
    max_pages: int = 1000
    terraform_bin: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in ("legacy_token_var", "tfe_token_var"):
            name = getattr(self, attr)
            if not _ENV_NAME.match(name or "") or credential_shape(name):
                raise ConfigError(
                    f"{attr} must be the NAME of an environment variable (like ATLAS_TOKEN), "
                    f"not {'a value' if name else 'empty'}; put the token in that variable instead.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from environment variables, then apply explicit overrides.

        Reads ``ATLAS_ADDRESS``, ``TFE_ADDRESS``, ``REQUESTS_CA_BUNDLE`` (or ``SSL_CERT_FILE``),
        ``TFE_RUNBOOK_TERRAFORM`` and the transport's bounds (`LIMIT_VARS`). Overrides whose value is None
        or "" are ignored, so notebook parameters can pass their defaults straight through.

        Raises:
            ConfigError: a bound's variable is not a positive number (the sentence names the variable).
        """
        env = os.environ if environ is None else environ
        base = cls(
            legacy_address=env.get(DEFAULT_LEGACY_ADDRESS_VAR, ""),
            tfe_address=env.get(DEFAULT_TFE_ADDRESS_VAR, ""),
            ca_bundle=env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None,
            terraform_bin=env.get("TFE_RUNBOOK_TERRAFORM") or None,
            environ=env,
            **_limits_from(env),
        )
        clean = {k: v for k, v in overrides.items() if v not in (None, "")}
        return replace(base, **clean) if clean else base

    def token(self, which: str) -> str:
        """Return the token for ``"legacy"`` or ``"tfe"`` from its environment variable.

        Raises:
            ConfigError: the variable is unset or empty; the message names the variable, never a value.
        """
        var = {"legacy": self.legacy_token_var, "tfe": self.tfe_token_var}[which]
        value = self.environ.get(var, "")
        if not value.strip():
            raise ConfigError(
                f"the {which} API token is missing: set the environment variable {var} "
                f"(User Settings > Tokens) before starting JupyterLab or the batch.")
        value = value.strip()
        # A pasted newline or other control character inside the token would split or corrupt the header
        # (requests refuses it with a message quoting the whole header, token included): refuse it here,
        # before any header is built, naming only the variable.
        if _CONTROL.search(value):
            raise ConfigError(
                f"the {which} API token in {var} contains a control character (a pasted newline or tab?): "
                f"set {var} again to the token alone, on one line.")
        # Tokens are ASCII; anything else (a pasted emoji, U+2028 line separator, a typographic quote) cannot
        # go into a header (http.client encodes headers as Latin-1 and raised a bare UnicodeEncodeError).
        if not value.isascii():
            raise ConfigError(
                f"the {which} API token in {var} contains a character that is not ASCII (a pasted line separator, "
                f"emoji or typographic quote?): set {var} again to the token alone, copied as plain text.")
        return value

    def address(self, which: str) -> str:
        """Return the base URL for ``"legacy"`` or ``"tfe"``, without a trailing slash.

        Raises:
            ConfigError: no address configured, or not an http(s) URL.
        """
        value = {"legacy": self.legacy_address, "tfe": self.tfe_address}[which].strip().rstrip("/")
        var = {"legacy": DEFAULT_LEGACY_ADDRESS_VAR, "tfe": DEFAULT_TFE_ADDRESS_VAR}[which]
        if not value:
            raise ConfigError(f"no {which} host configured: set {var} (like https://tfe.example.com).")
        problem = url_credential_problem(var, value)
        if problem:
            raise ConfigError(problem)
        if not re.match(r"^https?://[^/\s]+$", value):
            raise ConfigError(f"{var} must be a base URL like https://tfe.example.com, not {value!r}.")
        return value

    def address_var(self, which: str) -> str:
        """The environment variable that sets the address of ``"legacy"`` or ``"tfe"`` (for messages)."""
        return {"legacy": DEFAULT_LEGACY_ADDRESS_VAR, "tfe": DEFAULT_TFE_ADDRESS_VAR}[which]


def _limits_from(env: Mapping[str, str]) -> dict[str, float | int]:
    """The transport's bounds set in `env` (`LIMIT_VARS`), converted to the attributes' units.

    Raises:
        ConfigError: a value that is not a positive number, naming the variable.
    """
    limits: dict[str, float | int] = {}
    for var, (attribute, kind, factor) in LIMIT_VARS.items():
        text = env.get(var, "").strip()
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            number = 0.0
        if not number > 0 or number == float("inf") or (kind is int and not number.is_integer()):
            raise ConfigError(f"{var} must be a positive {'whole ' if kind is int else ''}number, not {text!r}: "
                              f"set it again or unset it for the default.")
        value = number * factor
        limits[attribute] = int(value) if attribute != "request_deadline" else value
    return limits
