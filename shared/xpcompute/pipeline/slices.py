"""Slice filters: which users a stage-2 query keeps, as data rather than SQL text.

A slice arrives from a user (the API's live-slice request), so it is a pydantic
model of column names and values, never a SQL fragment. ``check`` holds the
names to the experiment's declared dimensions and the values to each
dimension's type and allowed values; ``to_sql`` then builds the predicate from
sqlglot expressions in which every value is a literal. Hostile input is refused
with ``UnsafeIdentifierError`` or ``InputError`` before any query exists.

Semantics: every condition of ``all_of`` holds, and, if ``any_of`` is not
empty, at least one of its conditions holds. A condition is ``column IN
(values)`` (one value: equality), negated with ``negate``. A user whose
dimension is null matches no condition, negated or not, in SQL and in
``to_arrow_mask`` alike.

Equivalent filters are one slice: a filter is normalised when it is built
(each condition's values without repeats, each condition once) and its id
hashes the normalised, order-independent form, in which an ``any_of`` of one
condition is part of ``all_of``, so ``values: [US, US]``, ``any_of: [country=US]`` and
``all_of: [country=US]`` share one id and one label, and cannot enter the
multiple-testing family twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from xpcompute.errors import ColumnTypeError, InputError, UnsafeIdentifierError
from xpcompute.lazy import lazy
from xpcompute.metrics.base import IDENTIFIER, lit

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from sqlglot import exp

    from xpcompute.experiment import ExperimentSpec
else:  # loaded on first use: validating a filter needs neither sqlglot (SQL) nor numpy and pyarrow (masks), and
    # the API imports this module for its types, where most requests compute nothing
    exp = lazy("sqlglot", "exp")
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

Scalar = StrictStr | StrictInt | StrictBool
MAX_VALUE_CHARS = 256
MAX_CONDITIONS = 64
MAX_VALUES = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Condition(BaseModel):
    """``column IN (values)``, or ``NOT`` that when ``negate``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    values: tuple[Scalar, ...] = Field(min_length=1, max_length=MAX_VALUES)
    negate: bool = False

    @model_validator(mode="after")
    def _unique_values(self) -> Condition:
        """A repeated value changes nothing in ``IN``: keep each once (first-seen order, for the label)."""
        unique = tuple(_first_seen(self.values))
        if len(unique) != len(self.values):
            object.__setattr__(self, "values", unique)
        return self

    def label(self) -> str:
        vals = [str(v) for v in self.values]
        if len(vals) == 1:
            return f"{self.column}{'!=' if self.negate else '='}{vals[0]}"
        return f"{self.column} {'not in' if self.negate else 'in'} ({', '.join(vals)})"

    def to_sql(self) -> exp.Expr:
        column = exp.column(self.column)
        if len(self.values) == 1:
            pred: exp.Expr = column.eq(lit(self.values[0]))
        else:
            pred = column.isin(*[lit(v) for v in self.values])
        return exp.Not(this=exp.paren(pred)) if self.negate else pred

    def to_arrow_mask(self, table: pa.Table) -> pa.ChunkedArray:
        column = table.column(self.column)
        if pa.types.is_dictionary(column.type):
            return pa.chunked_array([self._dictionary_mask(chunk) for chunk in column.chunks], pa.bool_())
        hit = pc.is_in(column, value_set=pa.array(list(self.values), type=column.type))
        if self.negate:
            hit = pc.invert(hit)
        return pc.and_(pc.is_valid(column), hit)

    def _dictionary_mask(self, chunk: pa.DictionaryArray) -> pa.Array:
        """Test the few dictionary values, then look each row's answer up by its index (nulls stay false)."""
        values = chunk.dictionary
        hit = pc.is_in(values, value_set=pa.array(list(self.values), type=values.type))
        if self.negate:
            hit = pc.invert(hit)
        hit = pc.and_(pc.is_valid(values), hit)
        return pc.fill_null(pc.take(hit, chunk.indices), False)


class SliceFilter(BaseModel):
    """A slice: all users, a conjunction (``all_of``), a disjunction (``any_of``), or both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, max_length=128, description="Display label; defaults to the conditions.")
    all_of: tuple[Condition, ...] = ()
    any_of: tuple[Condition, ...] = ()

    @model_validator(mode="after")
    def _normalise(self) -> SliceFilter:
        """Each condition once (``canonical`` also reads an ``any_of`` of one condition as part of ``all_of``).

        Why: equivalent filters must get one slice id and one label, or the same users are computed twice
        and counted twice in the Benjamini-Hochberg family.
        """
        all_of = tuple(dict.fromkeys(self.all_of))
        any_of = tuple(dict.fromkeys(self.any_of))
        if all_of != self.all_of:
            object.__setattr__(self, "all_of", all_of)
        if any_of != self.any_of:
            object.__setattr__(self, "any_of", any_of)
        if self.name is not None and self.name.strip() == "":
            object.__setattr__(self, "name", None)
        return self

    # -- constructors ---------------------------------------------------------
    @classmethod
    def everyone(cls) -> SliceFilter:
        return cls()

    @classmethod
    def where(cls, **conditions: Any) -> SliceFilter:
        """Conjunction: ``SliceFilter.where(country="US", device="ios")``; a list value means IN."""
        return cls(all_of=_conditions(conditions))

    @classmethod
    def either(cls, **conditions: Any) -> SliceFilter:
        """Disjunction: ``SliceFilter.either(country=["US", "CA"])`` or ``either(country="US", device="tv")``."""
        return cls(any_of=_conditions(conditions))

    # -- identity -------------------------------------------------------------
    @property
    def is_everyone(self) -> bool:
        return not self.all_of and not self.any_of

    def canonical(self) -> str:
        """Order-independent JSON of the conditions (the name is display only)."""
        def norm(conds: Sequence[Condition]) -> list[Any]:
            items = [
                {"column": c.column, "negate": c.negate, "values": sorted(_first_seen(c.values), key=_value_key)}
                for c in conds
            ]
            unique = {json.dumps(d, sort_keys=True): d for d in items}
            return [unique[k] for k in sorted(unique)]
        # an any_of of one condition is that condition: it holds exactly where all_of's would
        all_of, any_of = (self.all_of, self.any_of) if len(self.any_of) != 1 else ((*self.all_of, *self.any_of), ())
        return json.dumps({"all_of": norm(all_of), "any_of": norm(any_of)}, sort_keys=True)

    @property
    def slice_id(self) -> str:
        """A storage-safe id: equal filters share it, whatever their order or name."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    def label(self) -> str:
        if self.name:
            return self.name
        if self.is_everyone:
            return "all users"
        parts = [c.label() for c in self.all_of]
        if self.any_of:
            any_part = " | ".join(c.label() for c in self.any_of)
            parts.append(f"({any_part})" if self.all_of and len(self.any_of) > 1 else any_part)
        return " & ".join(dict.fromkeys(parts))  # a condition in all_of and a one-condition any_of: once

    def columns(self) -> list[str]:
        return sorted({c.column for c in (*self.all_of, *self.any_of)})

    # -- checks and rendering -------------------------------------------------
    def check(self, experiment: ExperimentSpec, schema: pa.Schema | None = None) -> SliceFilter:
        """Refuse names that are not declared dimensions and values of the wrong type or outside the declared set.

        ``schema`` (the analysis table's) adds a check of each column's actual type.
        Returns ``self`` so that calls chain; raises before any SQL is built.
        """
        conditions = (*self.all_of, *self.any_of)
        if len(conditions) > MAX_CONDITIONS:
            raise InputError(f"slice has {len(conditions)} conditions; at most {MAX_CONDITIONS} are allowed")
        declared = set(experiment.dimensions)
        for cond in conditions:
            if not isinstance(cond.column, str) or not IDENTIFIER.match(cond.column) or cond.column not in declared:
                raise UnsafeIdentifierError(
                    f"slice column {cond.column!r} is not a declared dimension of experiment {experiment.id!r}; "
                    f"filter on one of: {', '.join(experiment.dimensions) or '(none declared)'}"
                )
            dim = experiment.dimension(cond.column)
            for value in cond.values:
                _check_value(cond.column, dim.dtype, dim.values, value)
            if schema is not None:
                _check_schema_type(cond.column, schema, cond.values)
        return self

    def to_sql(self) -> exp.Expr | None:
        """The WHERE predicate as a sqlglot expression (``None`` for all users). Call ``check`` first."""
        parts: list[exp.Expr] = [c.to_sql() for c in self.all_of]
        if self.any_of:
            parts.append(exp.paren(exp.or_(*[c.to_sql() for c in self.any_of])) if len(self.any_of) > 1 else self.any_of[0].to_sql())
        if not parts:
            return None
        return exp.and_(*parts) if len(parts) > 1 else parts[0]

    def to_arrow_mask(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        """The same filter evaluated by Arrow compute (the reference that tests compare SQL against)."""
        mask: Any = None
        for cond in self.all_of:
            hit = cond.to_arrow_mask(table)
            mask = hit if mask is None else pc.and_(mask, hit)
        if self.any_of:
            either: Any = None
            for cond in self.any_of:
                hit = cond.to_arrow_mask(table)
                either = hit if either is None else pc.or_(either, hit)
            mask = either if mask is None else pc.and_(mask, either)
        if mask is None:  # all users (no Python list of 10M booleans)
            return pa.array(np.ones(table.num_rows, dtype=np.bool_))
        return mask


def _value_key(value: object) -> tuple[str, object]:
    """A sort and identity key that keeps ``True`` and ``1`` apart (they are equal in Python)."""
    return type(value).__name__, value


def _first_seen(values: Sequence[Scalar]) -> list[Scalar]:
    seen: set[tuple[str, object]] = set()
    out = []
    for v in values:
        if _value_key(v) not in seen:
            seen.add(_value_key(v))
            out.append(v)
    return out


def _conditions(conditions: Mapping[str, Any]) -> tuple[Condition, ...]:
    out = []
    for column, value in conditions.items():
        values = tuple(value) if isinstance(value, list | tuple | set | frozenset) else (value,)
        out.append(Condition(column=column, values=values))
    return tuple(out)


_DTYPE_PY: dict[str, type] = {"string": str, "bigint": int, "boolean": bool}


def _check_value(column: str, dtype: str, allowed: tuple[str, ...] | None, value: object) -> None:
    want = _DTYPE_PY[dtype]
    if type(value) is not want:
        raise ColumnTypeError(
            f"slice value {value!r} for {column!r} has type {type(value).__name__}; {column} is a {dtype} dimension, "
            f"so give a {want.__name__} value"
        )
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS or _CONTROL.search(value):
            raise InputError(
                f"slice value for {column!r} is not a plain value (control characters or over {MAX_VALUE_CHARS} chars)"
            )
        if allowed is not None and value not in allowed:
            raise InputError(f"slice value {value!r} is not a known {column}; use one of: {', '.join(allowed)}")


def _check_schema_type(column: str, schema: pa.Schema, values: Sequence[object]) -> None:
    if column not in schema.names:
        raise InputError(f"slice column {column!r} is declared but missing from the analysis table; re-run stage 1")
    type_ = schema.field(column).type
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    ok = (
        (pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_))
        if isinstance(values[0], str)
        else pa.types.is_boolean(type_) if isinstance(values[0], bool) else pa.types.is_integer(type_)
    )
    if not ok:
        raise ColumnTypeError(
            f"slice column {column!r} has type {type_} in the analysis table, but the filter gives "
            f"{type(values[0]).__name__} values"
        )
