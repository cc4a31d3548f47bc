"""Name -> class lookup for metrics, dimensions and covariates.

The catalog registers its classes with the ``register_*`` decorators; a
scientist's notebook can register more the same way. Lookups of unknown names
fail with the list of known ones, because the name usually came from a user.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from xpcompute.errors import InputError
from xpcompute.metrics.base import Covariate, Dimension, Metric

M = TypeVar("M", bound=type[Metric])
D = TypeVar("D", bound=type[Dimension])
C = TypeVar("C", bound=type[Covariate])

_METRICS: dict[str, type[Metric]] = {}
_DIMENSIONS: dict[str, type[Dimension]] = {}
_COVARIATES: dict[str, type[Covariate]] = {}


def _add(table: dict[str, type], name: str, cls: type, role: str) -> None:
    existing = table.get(name)
    if existing is not None and existing is not cls:
        raise InputError(f"{role} {name!r} is already registered by {existing.__qualname__}; pick another name")
    table[name] = cls


def register_metric(cls: M) -> M:
    _add(_METRICS, cls.name, cls, "metric")
    return cls


def register_dimension(cls: D) -> D:
    _add(_DIMENSIONS, cls.name, cls, "dimension")
    return cls


def register_covariate(cls: C) -> C:
    _add(_COVARIATES, cls.name, cls, "covariate")
    return cls


def _unknown(role: str, name: object, known: dict[str, type]) -> InputError:
    return InputError(f"unknown {role} {name!r}; known {role}s: {', '.join(sorted(known))}")


def get_metric(name: str) -> Metric:
    """An instance of the registered metric ``name``."""
    cls = _METRICS.get(name)
    if cls is None:
        raise _unknown("metric", name, _METRICS)
    return cls()


def get_dimension(name: str) -> Dimension:
    cls = _DIMENSIONS.get(name)
    if cls is None:
        raise _unknown("dimension", name, _DIMENSIONS)
    return cls()


def registered_dimension(name: str) -> type[Dimension] | None:
    """The registered dimension class ``name``, or ``None`` (the experiment spec then reads it as a column)."""
    return _DIMENSIONS.get(name)


def get_covariate(name: str) -> Covariate:
    cls = _COVARIATES.get(name)
    if cls is None:
        raise _unknown("covariate", name, _COVARIATES)
    return cls()


CATALOG_MODULE = "xpcompute.metrics.catalog"


def metric_names(builtin_only: bool = False) -> list[str]:
    """Registered metric names; ``builtin_only`` leaves out what plugins registered (the streaming catalog's)."""
    return sorted(n for n, c in _METRICS.items() if not builtin_only or c.__module__ == CATALOG_MODULE)


def dimension_names() -> list[str]:
    return sorted(_DIMENSIONS)


def covariate_names(builtin_only: bool = False) -> list[str]:
    return sorted(n for n, c in _COVARIATES.items() if not builtin_only or c.__module__ == CATALOG_MODULE)


def higher_is_better(metrics: Iterable[str]) -> dict[str, bool]:
    """Each catalog metric's declared direction; metrics outside the catalog or with no direction are left out.

    The scorecard, the report, the page and the notebook use it to turn a
    significant change into "good" or "bad".
    """
    out: dict[str, bool] = {}
    for name in metrics:
        cls = _METRICS.get(name)
        value = None if cls is None else cls.higher_is_better
        if value is not None:
            out[name] = bool(value)
    return out
