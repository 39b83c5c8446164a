"""Guards for listings read page by page, so a host cannot keep the runbook paging forever.

Both APIs list in pages: TFE follows ``meta.pagination.next-page`` (`runbook_lib.jsonapi.paginate`), the
legacy states list asks page after page until a short one (`runbook_lib.legacy.LegacyClient.list_states`).
A host that always announces another page (``next-page = n + 1``, ``total_pages = 10**9``) kept both reading
for hundreds of pages. A `PageGuard` stops a listing, with one sentence naming the host, when:

* a page number does not advance (unless the host's own ``total-count`` says every item was read, a
  harmless quirk of the last page);
* an item comes back a second time (a host that ignores the page asked for);
* more than ``Settings.max_pages`` pages (``TFE_RUNBOOK_MAX_PAGES``) were read.

A stopped listing is an error, never a silently shortened list: a step must not decide on part of an estate.
"""

from __future__ import annotations

import json
from typing import Any, Hashable

from runbook_lib.errors import ApiError

#: Pages one listing may read when the settings say nothing (`runbook_lib.settings.Settings.max_pages`).
DEFAULT_MAX_PAGES = 1000


class PaginationError(ApiError):
    """A host's pagination did not end (or went round in circles); the listing was stopped, nothing changed."""


class PageGuard:
    """Watches one listing: call `page` before each page is read, `item` for each item, `next_page` after.

    Args:
        host: ``host[:port]`` of the API host, for the sentence.
        what: what is listed ("workspaces of acme"), for the sentence.
        max_pages: the most pages to read.
    """

    def __init__(self, host: str, what: str, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        self.host = host or "the host"
        self.what = what
        self.max_pages = max(1, int(max_pages))
        self.pages = 0
        self._seen: dict[Hashable, int] = {}

    def page(self) -> None:
        """Count a page about to be read.

        Raises:
            PaginationError: it would be one more than `max_pages`.
        """
        if self.pages >= self.max_pages:
            raise PaginationError(
                f"{self.host} still announced more {self.what} after {self.max_pages} pages, so the listing was "
                f"stopped there: if there really are that many, raise TFE_RUNBOOK_MAX_PAGES, else the host's "
                f"pagination is broken (report it to its administrators).")
        self.pages += 1

    def item(self, key: Hashable) -> None:
        """Record an item of the page being read.

        Raises:
            PaginationError: the same item came before (on an earlier page, or earlier on this one).
        """
        if key in self._seen:
            raise PaginationError(
                f"{self.host} listed the same item of {self.what} on page {self._seen[key]} and again on page "
                f"{self.pages}, so the listing was stopped rather than read forever: the host's pagination is "
                f"broken (report it to its administrators).")
        self._seen[key] = self.pages

    def items(self, entries: list[Any]) -> list[Any]:
        """Record every entry of the page being read, each by its whole content (canonical JSON), and return them.

        Raises:
            PaginationError: an entry came before.
        """
        for entry in entries:
            self.item(json.dumps(entry, sort_keys=True, default=str))
        return entries

    def next_page(self, current: int, following: int | None, total_count: int | None = None) -> int | None:
        """The page to read next, after page `current` announced `following`; None when the listing ends.

        Raises:
            PaginationError: `following` does not come after `current`, and the host's `total_count` does not
                show that every item was read.
        """
        if following is None:
            return None
        if following <= current:
            if total_count is not None and total_count == len(self._seen):
                return None  # every item the host counts is read: a last page that points at itself
            raise PaginationError(
                f"{self.host} answered page {current} of {self.what} with page {following} as the next one (the "
                f"page number did not advance), so the listing was stopped rather than read forever: the host's "
                f"pagination is broken (report it to its administrators).")
        return following
