"""The exceptions of the runbook, one hierarchy so callers can catch by meaning.

Every message is one sentence that names the problem and, where there is one, the fix. No exception
ever carries a token: API errors keep method, URL, status and the API's own error objects, and URLs
are stored with any credentials or token-bearing query parameters stripped.
"""

from __future__ import annotations

from typing import Any


class RunbookError(Exception):
    """Base of every error the runbook raises on purpose."""


class ConfigError(RunbookError):
    """A setting is missing or wrong (token variable unset, bad address, unreadable CA bundle)."""


class StateError(RunbookError):
    """A Terraform state file cannot be read: empty, truncated, not a state, bad version/serial/lineage."""


class PlanError(RunbookError):
    """A Terraform plan (JSON or 0.11 text) cannot be read; never silently treated as 'no changes'."""


class HclError(RunbookError):
    """A Terraform configuration cannot be parsed or safely rewritten."""


class TerraformError(RunbookError):
    """A terraform command failed; carries the command (without secrets), exit code and output tail."""

    def __init__(self, message: str, *, args_: list[str] | None = None, returncode: int | None = None,
                 output: str = "") -> None:
        super().__init__(message)
        self.command = list(args_ or [])
        self.returncode = returncode
        self.output = output


class MappingError(RunbookError):
    """The environment -> workspace mapping is invalid (unknown environment, bad or colliding name)."""


class StepError(RunbookError):
    """A runbook step refused to act, or its verification failed; nothing further was changed."""


class GateError(RunbookError):
    """A destructive action was not confirmed (missing or wrong confirmation)."""


class LedgerError(RunbookError):
    """The ledger cannot record or answer (locked by another batch, corrupt, missing evidence)."""


class AuditError(RunbookError):
    """The audit trail cannot be archived or verified (secret found, checksum mismatch)."""


class ApiError(RunbookError):
    """An API answered with an error, or could not be reached.

    Attributes:
        method: HTTP method of the failed request.
        url: request URL, with credentials and query strings that could carry secrets removed.
        status: HTTP status, or None for transport errors.
        errors: the API's error objects as returned (JSON:API list, or the legacy dict/list).
    """

    def __init__(self, message: str, *, method: str = "", url: str = "", status: int | None = None,
                 errors: Any = None) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.errors = errors if errors is not None else []

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.args[0]!r}, method={self.method!r}, url={self.url!r}, "
                f"status={self.status!r})")


class AuthError(ApiError):
    """401/403: the token is missing, wrong or lacks permission."""


class NotFoundError(ApiError):
    """404: the object does not exist, or belongs to an organization the token cannot see."""


class ConflictError(ApiError):
    """409/412: the object exists, is locked, or the state's serial/lineage/md5 conflicts."""


class ValidationError(ApiError):
    """422 (or 400): the request was refused as invalid; `errors` says which attribute."""


class RateLimitedError(ApiError):
    """429 after the retries were used up."""


class ServerError(ApiError):
    """5xx after the retries were used up."""


class TransportError(ApiError):
    """The host could not be reached, TLS failed, or the connection dropped."""
