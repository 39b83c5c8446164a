"""Organizations, their entitlements and their VCS connections (OAuth clients and tokens)."""

from __future__ import annotations

from typing import Iterator

from runbook_lib.http import create_or_adopt
from runbook_lib.jsonapi import Resource, document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.tfe.base import TfeBase


class OrganizationsApi(TfeBase):
    """Organizations (``/organizations``), entitlements and OAuth clients/tokens."""

    def entitlements(self, organization: str) -> Resource:
        """GET the organization's entitlement set (``operations``, ``state-storage``...).

        Raises:
            NotFoundError: no such organization (or not visible to the token).
        """
        return self._get(f"/organizations/{_seg(organization)}/entitlement-set", reuse=True)

    # -- organizations ------------------------------------------------------------------------------------------

    def list_organizations(self) -> Iterator[Resource]:
        """Yield the organizations the token can see (paged)."""
        return self._list("/organizations")

    def get_organization(self, name: str, *, fresh: bool = False) -> Resource:
        """GET one organization.

        Raises:
            NotFoundError: it does not exist or the token cannot see it.
        """
        return self._get(f"/organizations/{_seg(name)}", reuse=True, fresh=fresh)

    def find_organization(self, name: str, *, fresh: bool = False) -> Resource | None:
        """Return the organization, or None when it does not exist (or is not visible)."""
        return self._find(f"/organizations/{_seg(name)}", reuse=True, fresh=fresh)

    def create_organization(self, name: str, email: str, *, adopt_existing: bool = True) -> Resource:
        """Create an organization, or adopt it if it already exists and the token can see it.

        Args:
            name: organization name.
            email: owner notification email.
            adopt_existing: when the name is taken by an organization the token can see, return it
                (``adopted=True``); when False, raise ConflictError instead.

        Returns:
            The organization.

        Raises:
            ConflictError: exists and ``adopt_existing`` is False.
            ValidationError: refused (bad name, or taken by an organization the token cannot see).
            ServerError, TransportError: ambiguous outcome and the organization does not exist.
        """
        doc = document("organizations", {"name": name, "email": email})
        return self._create_unique(lambda: self._send("POST", "/organizations", doc),
                                   lambda: self.find_organization(name), adopt_existing=adopt_existing,
                                   what=f"organization {name!r}")

    # -- OAuth --------------------------------------------------------------------------------------------------

    def list_oauth_clients(self, organization: str, *, fresh: bool = False) -> Iterator[Resource]:
        """Yield the organization's OAuth clients (VCS connections); ``fresh``: not from the read memo."""
        return self._list(f"/organizations/{_seg(organization)}/oauth-clients", reuse=True, fresh=fresh)

    def create_oauth_client(self, organization: str, *, service_provider: str, http_url: str, api_url: str,
                            oauth_token_string: str, name: str | None = None) -> Resource:
        """Create a VCS connection; on an ambiguous outcome adopt a client with the same provider, URL and name.

        Args:
            organization: organization name.
            service_provider: ``github``, ``gitlab_hosted``, ...
            http_url / api_url: VCS web and API base URLs.
            oauth_token_string: the VCS personal access token (a secret: sent in the body only, never logged).
            name: display name.

        Returns:
            The OAuth client (relationship ``oauth-tokens`` lists its tokens).

        Raises:
            ValidationError: refused; ServerError/TransportError: ambiguous and nothing was created.
        """
        doc = document("oauth-clients", {"service-provider": service_provider, "http-url": http_url,
                                         "api-url": api_url, "oauth-token-string": oauth_token_string,
                                         "name": name})

        def read_back() -> Resource | None:
            for client in self.list_oauth_clients(organization, fresh=True):
                if (client.get("service-provider") == service_provider and client.get("http-url") == http_url
                        and (name is None or client.get("name") == name)):
                    return client
            return None

        return create_or_adopt(lambda: self._send("POST", f"/organizations/{_seg(organization)}/oauth-clients",
                                                  doc), read_back)

    def list_oauth_tokens(self, oauth_client_id: str) -> Iterator[Resource]:
        """Yield the OAuth tokens of an OAuth client (their ids go into a workspace's ``vcs-repo``)."""
        return self._list(f"/oauth-clients/{_seg(oauth_client_id)}/oauth-tokens", reuse=True)
