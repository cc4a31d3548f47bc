"""A module imported when one of its attributes is first read.

Why: a function pays every import of its handler on each new execution environment (``tests/test_import_graph.py``,
``benchmarks/bench_coldstart.py``). sqlglot, for one, is needed where SQL is composed or a declared expression is
parsed, but the modules that do so (metrics, slice filters) are also imported by paths that never build SQL, such
as a fit. ``exp = lazy("sqlglot", "exp")`` keeps ``exp.Column`` reading as before, and imports sqlglot on first
use. Type checkers see the real module: write ``if TYPE_CHECKING: from sqlglot import exp`` beside it.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for ``package.attribute`` (or ``package`` alone) until an attribute is read, then for the module."""

    def __init__(self, package: str, attribute: str | None = None) -> None:
        self.__dict__["_target"] = (package, attribute)

    def __getattr__(self, name: str) -> Any:
        package, attribute = self.__dict__["_target"]
        module = importlib.import_module(package)
        if attribute is not None:
            module = getattr(module, attribute)
        self.__dict__.update(vars(module))  # later reads are plain attribute lookups
        return getattr(module, name)

    def __repr__(self) -> str:
        package, attribute = self.__dict__["_target"]
        return f"<lazy {package}{'.' + attribute if attribute else ''}>"


def lazy(package: str, attribute: str | None = None) -> Any:
    """``lazy("sqlglot", "exp")`` stands for ``from sqlglot import exp``; ``lazy("yaml")`` for ``import yaml``."""
    return LazyModule(package, attribute)


__all__ = ["LazyModule", "lazy"]
