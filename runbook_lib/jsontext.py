"""Reading JSON that an operator or a host handed over (a plan, a state), with one-sentence errors."""

from __future__ import annotations

import json
from typing import Any

from runbook_lib.errors import RunbookError


def load_json(data: str | bytes, error: type[RunbookError], *, empty: str, invalid: str) -> Any:
    """Parse JSON text, refusing blank or malformed input with one sentence that says what to do.

    Args:
        data: the JSON text, or bytes (`json.loads` detects their UTF encoding).
        error: the exception class to raise.
        empty: the message for blank input.
        invalid: the message for malformed JSON; ``{where}`` becomes the parser's "<problem> at line L column C".

    Returns:
        The parsed value (the caller checks its type).

    Raises:
        error: blank or malformed input (chained to the parser's error). UnicodeDecodeError passes through for
            the caller to name.
    """
    if not data.strip():
        raise error(empty)
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise error(invalid.format(where=f"{exc.msg} at line {exc.lineno} column {exc.colno}")) from exc
