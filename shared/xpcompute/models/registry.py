"""Model names to classes. Adding a model: write its module, then add one line here."""

from __future__ import annotations

import importlib

from xpcompute.errors import InputError
from xpcompute.models.base import CausalModel

#: name -> "module:Class"; imported lazily so a function only loads the model it fits.
MODELS: dict[str, str] = {
    "ttest": "xpcompute.models.ttest:WelchTTest",
    "proportion": "xpcompute.models.proportion:TwoProportionZTest",
    "ols": "xpcompute.models.ols:OLSModel",
    "cate": "xpcompute.models.ols:CATEModel",
    "ratio": "xpcompute.models.ratio:RatioModel",
    "dte": "xpcompute.models.dte:DTEModel",
    "did": "xpcompute.models.did:DiDModel",
    "mannwhitney": "xpcompute.models.mannwhitney:MannWhitneyModel",
    "quantile": "xpcompute.models.quantile:QuantileModel",
    "event_quantile": "xpcompute.models.event_quantile:EventQuantileModel",
}


def model_class(name: str) -> type[CausalModel]:
    """The class registered under ``name``; unknown names list the known ones."""
    try:
        target = MODELS[name]
    except KeyError as exc:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}") from exc
    module, _, cls = target.partition(":")
    found: type[CausalModel] = getattr(importlib.import_module(module), cls)
    return found


def register(name: str, target: str) -> None:
    """Register a model class (``"package.module:Class"``) under ``name``, e.g. from a notebook."""
    MODELS[name] = target
