"""Decision rules by name, as metrics and models are registered: a team can plug in its own.

The experiment YAML names its rule (``decision: {rule: risk_aware}``) and the spec checks
the name here when it is parsed, so the registry must stay cheap to import: built-in
rules are listed by module path and imported on first use (the rule module pulls scipy).

A team's rule is any class with a ``name`` and a ``decide(context) -> list[CellDecision]``
method (``xpcompute.decision.rule.DecisionRule``), registered from its plugin module::

    from xpcompute.decision import register_rule
    register_rule("two_goals", TwoGoalsRule)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from xpcompute.errors import InputError

if TYPE_CHECKING:
    from xpcompute.decision.rule import DecisionRule

_BUILTIN: dict[str, str] = {"risk_aware": "xpcompute.decision.rule:RiskAwareRule"}
_RULES: dict[str, type[DecisionRule]] = {}


def register_rule(name: str, cls: type[DecisionRule]) -> type[DecisionRule]:
    """Register ``cls`` under ``name``; registering another class under a taken name is refused."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"decision rule name {name!r} must be letters, digits, '_' or '-'")
    if not callable(getattr(cls, "decide", None)):
        raise InputError(f"decision rule {name!r}: {cls!r} has no decide(context) method")
    existing = _RULES.get(name)
    if existing is not None and existing is not cls:
        raise InputError(f"decision rule {name!r} is already registered ({existing.__module__}.{existing.__name__}); "
                         "choose another name")
    _RULES[name] = cls
    return cls


def rule_names() -> list[str]:
    """Every known rule name (built-in and registered), sorted."""
    return sorted({*_BUILTIN, *_RULES})


def has_rule(name: str) -> bool:
    return name in _RULES or name in _BUILTIN


def get_rule(name: str) -> DecisionRule:
    """An instance of the rule registered as ``name`` (typed 4xx error naming the known rules otherwise)."""
    cls = _RULES.get(name)
    if cls is None and name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
        _RULES[name] = cls
    if cls is None:
        raise InputError(f"decision rule {name!r} is not registered; use one of {rule_names()} or register yours "
                         "with xpcompute.decision.register_rule in a plugin module")
    return cls()


__all__ = ["get_rule", "has_rule", "register_rule", "rule_names"]
