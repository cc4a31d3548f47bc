"""Load a team's own metrics repo: Python modules that register metrics, covariates, dimensions and models.

The paper's Metrics Repo lives in the team's repository, not inside
xpcompute. Its modules register what they define with the ``register_*``
decorators (``xpcompute.metrics``) and ``xpcompute.models.registry.register``,
and xpcompute imports them from three places, in this order:

1. the Python entry-point group ``xpcompute.plugins`` of every installed
   package (``[project.entry-points."xpcompute.plugins"] my_team = "my_team.metrics"``);
2. ``XPCOMPUTE_PLUGINS``: module names separated by commas;
3. an experiment's ``plugins:`` list in its YAML.

The CLI, the API server, every local worker process and every function
handler call ``load_plugins()`` at start, and an experiment spec loads its own
list when it is parsed, so the same names resolve wherever a job runs.
Loading is idempotent: a module is imported once per process.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points

from xpcompute.errors import InputError

ENTRY_POINT_GROUP = "xpcompute.plugins"
ENV_VAR = "XPCOMPUTE_PLUGINS"
PATH_VAR = "XPCOMPUTE_PLUGIN_PATH"
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_loaded: dict[str, str] = {}


def env_modules() -> list[str]:
    """Module names from ``XPCOMPUTE_PLUGINS``."""
    return [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]


def _extend_path() -> None:
    """``XPCOMPUTE_PLUGIN_PATH`` (folders separated by ``os.pathsep``) lets a repo that is not installed be imported."""
    for folder in os.environ.get(PATH_VAR, "").split(os.pathsep):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)


def import_module(name: str, origin: str) -> None:
    """Import one plugin module once; a failure names the module and where it was asked for."""
    if name in _loaded:
        return
    if not _MODULE.match(name):
        raise InputError(f"plugin {name!r} (from {origin}) is not a Python module name, e.g. 'my_team.metrics'")
    _extend_path()
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"plugin module {name!r} (from {origin}) cannot be imported: {exc}. Install the team's metrics "
            f"package in this environment, or add its folder to {PATH_VAR}"
        ) from exc
    except InputError as exc:
        raise InputError(f"plugin module {name!r} (from {origin}): {exc}") from exc
    _loaded[name] = origin


def load_plugins(modules: Iterable[str] = (), origin: str = "the experiment spec") -> list[str]:
    """Import the entry-point plugins, ``XPCOMPUTE_PLUGINS`` and ``modules``; returns every module loaded so far."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value not in _loaded:
            import_module(ep.value.split(":")[0], f"entry point {ep.name!r} of {ENTRY_POINT_GROUP}")
    for name in env_modules():
        import_module(name, ENV_VAR)
    for name in modules:
        import_module(name, origin)
    return list(_loaded)


def loaded() -> dict[str, str]:
    """Module name -> where it was asked for (for ``/healthz`` and ``experiment validate``)."""
    return dict(_loaded)


__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "PATH_VAR", "load_plugins", "loaded"]
