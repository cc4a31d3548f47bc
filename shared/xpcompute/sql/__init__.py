"""SQL built as sqlglot expression trees and rendered per dialect (DuckDB, Spark, Trino).

``stage1`` and ``stage2`` build the pipeline's queries; ``dialects`` holds what
differs between engines and the one ``render`` function.
"""

from xpcompute.sql.dialects import DIALECTS, Dialect, dialect, render, table

__all__ = ["DIALECTS", "Dialect", "dialect", "render", "table"]
