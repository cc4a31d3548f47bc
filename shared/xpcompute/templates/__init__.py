"""The HTML templates (Jinja2) of the report and the scorecard page, and the one environment that renders them.

Project rule: HTML belongs in templates, not in Python strings. Python builds plain view objects
(numbers already formatted, verdicts named); the templates lay them out. Autoescape is on for every
template, so a metric, slice or cell name is text wherever it appears; markup that Python must hand
over whole (a Plotly figure's div, plotly.js itself) is passed through ``markupsafe.Markup`` where it is
made, never by a template's ``|safe`` on user text.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The shared environment: templates from this package, autoescaped, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("xpcompute", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env


@cache
def asset(name: str) -> str:
    """A static file of this package (a stylesheet, a script) as text, e.g. ``"page/page.js"``."""
    return (resources.files(__package__) / name).read_text(encoding="utf-8")


def render(name: str, **context: Any) -> str:
    """Render the template ``name`` (e.g. ``"report/decision.html.j2"``) with ``context``."""
    return environment().get_template(name).render(**context)


__all__ = ["asset", "environment", "render"]
