"""Read reuse within a step: answers to lookups kept for a short while and forgotten on any write."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import requests


class ReadMemo:
    """Answers to lookups a step has just made, reused instead of asking the server again.

    Rules, which keep every refusal as strict as a fresh read would:

    * only reads a client marks as lookups (``reuse=True``: a workspace, a state version, an environment,
      variables) are kept; polls (runs, plans) always go to the server;
    * an answer is reused for at most `max_age` seconds;
    * any write through the session forgets every answer before it is sent (so a read after a change is
      fresh), and `clear` does the same after a change made outside the session (terraform, a git push);
    * a caller that must see the present passes ``fresh=True`` (and the answer it gets replaces the kept one).

    One memo belongs to one step run (one `runbook_lib.context.StepContext`) and one thread.

    Attributes:
        max_age: seconds an answer may be reused.
        hits: lookups answered from the memo (requests not sent).
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.hits = 0
        self._clock = clock
        self._answers: dict[tuple, tuple[float, requests.Response]] = {}

    @staticmethod
    def key(url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> tuple:
        return (url, tuple(sorted((str(k), str(v)) for k, v in (params or {}).items())),
                tuple(sorted((headers or {}).items())))

    def get(self, key: tuple) -> requests.Response | None:
        kept = self._answers.get(key)
        if kept is None or self._clock() - kept[0] > self.max_age:
            return None
        return kept[1]

    def put(self, key: tuple, response: requests.Response) -> None:
        self._answers[key] = (self._clock(), response)

    def clear(self) -> None:
        """Forget every answer (after a write, or a change made outside the session)."""
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)

