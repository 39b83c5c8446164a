"""The HTML the runbook writes, as jinja2 templates with autoescape on.

Every page and fragment (the verdict banners, tables and notes a notebook shows, the batch's
`summary.html`) is a template in this folder, rendered by `render`. Autoescape is on for all of them, so
every value a template prints is escaped unless the code passed it as `markupsafe.Markup` (a fragment
rendered here first): text from a host, a file or a parameter never becomes markup. Templates put no
value inside CSS (colours come from the runbook's own tables, never from data) and take links only
through the `href` filter, which refuses anything but a relative path or an http(s) URL.

The templates use inline styles only: executed notebooks open untrusted in JupyterLab, whose sanitizer
removes `<style>` elements and keeps inline styles; the summary page is a file of its own and keeps its
style sheet.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

#: An absolute URL begins with its scheme.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: A relative link the pages may carry: a file of the batch (`<org>__<env>/05_....html`) or an anchor.
_RELATIVE = re.compile(r"^(?:#[A-Za-z0-9_.-]+|[A-Za-z0-9_~-][A-Za-z0-9_.~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)*)$")


def href(value: Any) -> str | None:
    """`value` as a link target, or None when it is not one a page should follow.

    A file of the batch (`acme__web/05_commit_and_verify.html`: letters, digits, `_`, `-`, `.`, `~` and
    `/`, no segment starting with a dot, so no `..`), an anchor (`#env-...`), or an `http(s)://` URL with a
    host pass; anything else (`javascript:`, `data:`, `//host`, markup, control characters) is refused, so
    no value can turn a link into a script or point it outside the batch unannounced.
    """
    if value is None:
        return None
    text = str(value)
    if _RELATIVE.match(text):
        return text
    if any(ord(c) < 33 or c in "\\\x7f<>\"'`" for c in text):
        return None
    parts = urlsplit(text)
    return text if parts.scheme in ("http", "https") and parts.netloc and _SCHEME.match(text) else None


def clock(stamp: Any) -> str:
    """An ISO timestamp as `HH:MM:SS` (its own time zone); "" when there is none."""
    try:
        return datetime.fromisoformat(str(stamp)).strftime("%H:%M:%S") if stamp else ""
    except ValueError:
        return str(stamp)


def pretty_json(value: Any) -> str:
    """Nested evidence as indented JSON text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@lru_cache(maxsize=1)
def environment() -> Any:
    """The one jinja2 environment: this package's templates, autoescape on for every template."""
    import jinja2

    # None prints as nothing (a fact not recorded is shown blank or named by the template, never "None").
    env = jinja2.Environment(loader=jinja2.PackageLoader("runbook_lib", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             finalize=lambda value: "" if value is None else value)
    env.filters.update(href=href, clock=clock, pretty_json=pretty_json)
    return env


def render(name: str, **context: Any) -> str:
    """Render the template `name` (e.g. "banner.html.j2") with `context`; values are escaped."""
    return environment().get_template(name).render(**context)


def fragment(name: str, **context: Any) -> Any:
    """`render` as markup another template may embed without escaping it again."""
    from markupsafe import Markup

    return Markup(render(name, **context))
