"""The metrics repo: metric, dimension and covariate classes, and the streaming catalog.

Importing this package registers the catalog, so ``get_metric("sessions")``
works everywhere the package is imported.
"""

from xpcompute.metrics import catalog as catalog
from xpcompute.metrics.base import (
    Aggregate,
    Aggregation,
    Covariate,
    Dimension,
    Metric,
    Part,
    PerUserColumn,
    QuantileMetric,
    RatioMetric,
    SqlContext,
    check_identifier,
)
from xpcompute.metrics.registry import (
    covariate_names,
    dimension_names,
    get_covariate,
    get_dimension,
    get_metric,
    higher_is_better,
    metric_names,
    register_covariate,
    register_dimension,
    register_metric,
)

__all__ = [
    "Aggregate",
    "Aggregation",
    "Covariate",
    "Dimension",
    "Metric",
    "Part",
    "PerUserColumn",
    "QuantileMetric",
    "RatioMetric",
    "SqlContext",
    "catalog",
    "check_identifier",
    "covariate_names",
    "dimension_names",
    "get_covariate",
    "get_dimension",
    "get_metric",
    "higher_is_better",
    "metric_names",
    "register_covariate",
    "register_dimension",
    "register_metric",
]
