"""The project's own error types.

Every layer raises these; only the API layer maps them to HTTP status codes
(``status`` below), and only adapters translate provider errors into them.
Each message must say what to fix, not only what went wrong.
"""

from __future__ import annotations


class XPError(Exception):
    """Base class: anything xpcompute raises on purpose."""

    status: int = 500
    code: str = "internal"


class InputError(XPError, ValueError):
    """The caller's data or spec cannot be analysed as given (HTTP 400/422)."""

    status = 422
    code = "invalid_input"


class MissingColumnError(InputError):
    code = "missing_column"


class ColumnTypeError(InputError):
    code = "column_type"


class CellError(InputError):
    """Fewer than two cells, an unknown control, or an empty cell."""

    code = "cells"


class ZeroVarianceError(InputError):
    code = "zero_variance"


class MissingValuesError(InputError):
    code = "missing_values"


class CollinearityError(InputError):
    code = "collinear"


class NumericRangeError(InputError):
    """A value or result outside what float64 holds (beyond about 1.8e308)."""

    code = "numeric_range"


class LimitError(InputError):
    """A request exceeds a configured limit (``XPCOMPUTE_MAX_*``, 422); the message names the limit and its
    variable, so the caller knows what to split or which setting to raise."""

    code = "limit_exceeded"


class UnsafeIdentifierError(InputError):
    """A user-supplied name that is not a declared dimension/metric/column."""

    status = 400
    code = "unsafe_identifier"


class NotFoundError(XPError):
    status = 404
    code = "not_found"


class ConflictError(XPError):
    """A conditional write lost: someone else already did this work."""

    status = 409
    code = "conflict"


class StorageError(XPError):
    """The object store or state store failed (after the adapter's retries)."""

    status = 503
    code = "storage"


class JobFailedError(XPError):
    """A job run outside this process (a Spark application from spark-submit) failed or did not finish.

    The message carries the job's reason and the tail of its log, since the process that knew more is gone.
    """

    status = 502
    code = "job_failed"


class NativeError(XPError):
    """A C++ primitive reported a failure (translated from a C++ exception)."""

    code = "native"


class CorruptObjectError(XPError):
    """A stored object's bytes do not decode (truncated or damaged); the message names its key.

    Derived objects (compressed slices, cubes) are recomputed from the analysis table when this is raised
    while reading them; anything else reports it.
    """

    status = 500
    code = "corrupt_object"
