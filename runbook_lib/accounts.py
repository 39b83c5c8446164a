"""Whose tokens: one request to each host, answering with the account the token belongs to.

`tfe-runbook doctor` shows the answers; `tfe-runbook run` asks once before it starts any kernel, so a wrong
token or address is one sentence, not one failed step per environment; the batch's manifest records the
accounts ("who", beside the operating-system user).

- The new host: ``GET /api/v2/account/details`` names the token's user (a team or organization token has
  none: 404). Its answer also carries the host's rate limit, which `--jobs auto` uses.
- The legacy host has no "whose token is this": ``GET /api/v1/user/<name>`` (users.html.md of the legacy
  API; organizations are users too) answers the user object with a valid token and 401 without one. It is
  asked for the new host's user (one installation served both products with one set of accounts) or, for a
  team token, for the legacy organization; what it proves is said as such: the token is accepted, and that
  account exists there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from runbook_lib.errors import ApiError, AuthError, ConfigError, NotFoundError, RunbookError, TransportError
from runbook_lib.settings import DEFAULT_LEGACY_ADDRESS_VAR, DEFAULT_TFE_ADDRESS_VAR, Settings


class HostCheckError(RunbookError):
    """A host did not answer, or refused its token; the message names the setting to fix."""


@dataclass(frozen=True)
class HostAccount:
    """One host's answer: whose token, in words and as facts for the manifest (never the token)."""

    which: str            # "tfe" or "legacy"
    address: str
    token_var: str
    account: str          # the user's name, or "" when the host cannot say (a team token)
    detail: str           # one line for the operator
    email: str = ""
    rate_limit: float | None = None

    def facts(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "detail"}


def _failure(which: str, settings: Settings, exc: Exception) -> HostCheckError:
    address_var = DEFAULT_TFE_ADDRESS_VAR if which == "tfe" else DEFAULT_LEGACY_ADDRESS_VAR
    token_var = settings.tfe_token_var if which == "tfe" else settings.legacy_token_var
    name = "TFE" if which == "tfe" else "legacy"
    address = settings.tfe_address if which == "tfe" else settings.legacy_address
    if isinstance(exc, ConfigError):
        return HostCheckError(str(exc))
    if isinstance(exc, AuthError):
        return HostCheckError(f"the {name} host {address} refused the token in ${token_var} ({exc.status}): set "
                              f"{token_var} to a valid user API token (User Settings > Tokens), then run again.")
    if isinstance(exc, TransportError):
        return HostCheckError(f"the {name} host {address} did not answer ({exc}); check {address_var} (scheme, host "
                              f"and port) and the network, then run again.")
    return HostCheckError(f"the {name} host {address} answered the account check with an error ({exc}); check "
                          f"{address_var} and ${token_var}, then run again.")


def check_tfe(settings: Settings) -> HostAccount:
    """Ask the new host whose token ``$TFE_TOKEN`` (or the named variable) is: one request, two when the answer
    does not announce the rate limit (then a ping asks it).

    Raises:
        HostCheckError: no address or token, the token refused, or the host unreachable.
    """
    from runbook_lib.tfe import TfeClient

    try:
        address = settings.address("tfe")
        client = TfeClient(settings, read_only=True)
        try:
            try:
                user = client.account()
                name, email = str(user.get("username") or ""), str(user.get("email") or "")
                detail = f"answers ${settings.tfe_token_var} as user {name}" + (f" ({email})" if email else "")
            except NotFoundError:  # a team or organization token has no account details (account.mdx)
                name, email = "", ""
                detail = f"answers ${settings.tfe_token_var}: a team or organization token (no user account)"
            facts = client.about()
        finally:
            client.session.close()
    except (ApiError, ConfigError) as exc:
        raise _failure("tfe", settings, exc) from exc
    limit = facts.get("rate_limit")
    return HostAccount("tfe", address, settings.tfe_token_var, name, detail, email,
                       float(limit) if limit else None)


def check_legacy(settings: Settings, name: str) -> HostAccount:
    """Ask the legacy host for the user `name` with ``$ATLAS_TOKEN``: one request.

    Raises:
        HostCheckError: no address or token, the token refused, or the host unreachable.
    """
    from runbook_lib.legacy import LegacyClient

    try:
        address = settings.address("legacy")
        client = LegacyClient(settings, read_only=True)
        try:
            try:
                user = client.get_user(name)
                found = str(user.get("username") or name)  # the user object itself (users.html.md)
                detail = (f"accepts ${settings.legacy_token_var} (user {found} read; the legacy API does not say "
                          f"whose token it is)")
            except NotFoundError:  # the token was accepted (a refused one is 401), but no such user there
                found = ""
                detail = f"accepts ${settings.legacy_token_var} (no user named {name} there to read)"
        finally:
            client.session.close()
    except (ApiError, ConfigError) as exc:
        raise _failure("legacy", settings, exc) from exc
    return HostAccount("legacy", address, settings.legacy_token_var, found, detail)


def check_hosts(settings: Settings, *, legacy_name: str = "") -> list[HostAccount]:
    """Both hosts, the new one first (its user names the legacy user to read; `legacy_name` otherwise).

    Raises:
        HostCheckError: the first host that fails, in one sentence naming the setting.
    """
    tfe = check_tfe(settings)
    return [tfe, check_legacy(settings, tfe.account or legacy_name or "")]


def settings_for(parameters: dict[str, Any] | None = None) -> Settings:
    """The settings a batch's notebooks would build (token variable names and CA bundle from the parameters)."""
    parameters = parameters or {}
    return Settings.from_env(legacy_token_var=parameters.get("legacy_token_var") or "",
                             tfe_token_var=parameters.get("tfe_token_var") or "",
                             ca_bundle=parameters.get("ca_bundle") or "")
