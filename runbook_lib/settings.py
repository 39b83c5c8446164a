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
from runbook_lib.secrets import credential_shape

DEFAULT_LEGACY_TOKEN_VAR = "ATLAS_TOKEN"
DEFAULT_TFE_TOKEN_VAR = "TFE_TOKEN"
DEFAULT_LEGACY_ADDRESS_VAR = "ATLAS_ADDRESS"
DEFAULT_TFE_ADDRESS_VAR = "TFE_ADDRESS"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# C0 controls, DEL and C1 controls: never part of a token, and fatal (or worse, header-splitting) in a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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
        connect_timeout / read_timeout: seconds.
        terraform_bin: the operator's terraform executable for the CLI path (None: not configured).
    """

    legacy_address: str = ""
    tfe_address: str = ""
    legacy_token_var: str = DEFAULT_LEGACY_TOKEN_VAR
    tfe_token_var: str = DEFAULT_TFE_TOKEN_VAR
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
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

        Reads ``ATLAS_ADDRESS``, ``TFE_ADDRESS``, ``REQUESTS_CA_BUNDLE`` (or ``SSL_CERT_FILE``)
        and ``TFE_RUNBOOK_TERRAFORM``. Overrides whose value is None or "" are ignored, so notebook
        parameters can pass their defaults straight through.
        """
        env = os.environ if environ is None else environ
        base = cls(
            legacy_address=env.get(DEFAULT_LEGACY_ADDRESS_VAR, ""),
            tfe_address=env.get(DEFAULT_TFE_ADDRESS_VAR, ""),
            ca_bundle=env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None,
            terraform_bin=env.get("TFE_RUNBOOK_TERRAFORM") or None,
            environ=env,
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
        if not re.match(r"^https?://[^/\s]+$", value):
            raise ConfigError(f"{var} must be a base URL like https://tfe.example.com, not {value!r}.")
        return value
