"""What a rehearsal against the sandbox passes to the runbook: the sandbox's VCS connection settings.

A real migration names its VCS provider in the step-1 parameters (`vcs_service_provider`,
`vcs_http_url`, ...) and keeps the provider's access token in `$VCS_OAUTH_TOKEN`. The sandbox's
"provider" is its folder of bare git repositories; these helpers give the matching values, so the
demo, the tests and an operator rehearsing by hand use the same ones.
"""

from __future__ import annotations

from typing import Mapping

NEW_ORG = "acme"
OPERATOR_EMAIL = "operator@acme.example"
VCS_TOKEN_VAR = "VCS_OAUTH_TOKEN"


def batch_parameters(env: Mapping[str, str]) -> dict[str, str]:
    """Notebook parameters for every step of a rehearsal batch (no secrets: names and URLs only).

    Args:
        env: the sandbox's `sandbox.env` values.
    """
    git_url = "file://" + env["SANDBOX_GIT_ROOT"]
    return {"organization_email": OPERATOR_EMAIL, "vcs_service_provider": "gitlab_community_edition",
            "vcs_http_url": git_url, "vcs_api_url": git_url, "vcs_token_var": VCS_TOKEN_VAR}


def batch_environ(env: Mapping[str, str]) -> dict[str, str]:
    """Environment variables for a rehearsal batch: the sandbox's, plus a VCS token and the git base.

    The sandbox accepts any VCS token value; a real migration puts the provider's token in
    `$VCS_OAUTH_TOKEN` instead.
    """
    values = dict(env)
    values.setdefault(VCS_TOKEN_VAR, "sandbox-vcs-token")
    values.setdefault("TFE_RUNBOOK_GIT_BASE", env["SANDBOX_GIT_ROOT"])
    return values
