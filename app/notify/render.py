"""Message bodies from Jinja2 templates (app/notify/templates): HTML escaped, text as is."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@cache
def _env() -> Environment:
    # StrictUndefined: a missing variable fails the render instead of sending a blank.
    return Environment(loader=PackageLoader("app.notify", "templates"), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> tuple[str, str]:
    """(text, html) of `template` (template.txt and template.html)."""
    env = _env()
    return env.get_template(f"{template}.txt").render(**context), env.get_template(f"{template}.html").render(**context)
