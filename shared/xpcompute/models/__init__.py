"""Causal models on compressed data: one potential-outcomes base, one module per model."""

from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.models.fit import FitOutput, fit_compressed, fit_table, model_data, prepare
from xpcompute.models.registry import model_class, register

__all__ = [
    "CausalModel",
    "FitOutput",
    "MeansCovariance",
    "ModelData",
    "Subgroup",
    "fit_compressed",
    "fit_table",
    "model_class",
    "model_data",
    "prepare",
    "register",
]
