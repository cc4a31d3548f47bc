"""The compressed schema: the contract between stage 2 (SQL or C++) and the models.

A *moments* table has one row per distinct combination of its key columns
(cell, discrete covariates, segment, time, ...) and, for every metric, the
frequency-weighted sums of the monomials ``y**ey * c1**e1 * ... * ck**ek`` over
the rows of the group, where ``c1..ck`` are that metric's continuous
covariates. Column ``{metric}__m_{ey}_{e1}_..._{ek}`` holds one such sum;
``{metric}__m_0_..._0`` is the metric's row count (rows with a null metric or
covariate are left out of that metric only). ``_n`` counts all rows.

The monomial set is every exponent vector with ``ey <= 2`` and total degree
``<= 4``: exactly what OLS with heteroskedasticity-robust (HC1) errors needs to
stay lossless with continuous covariates (the meat needs
``sum e^2 c c'``, a fourth moment), and what ratio metrics need (degree two).
With no continuous covariates this reduces to ``n, sum y, sum y^2``.

Every variable is stored shifted and scaled, ``z = (x - shift) / scale``
with per-column constants fixed once per analysis table (``transform.py``):
the sums are of ``z``, and ``MetricLayout.transforms`` holds the constants of
the metric and of each covariate (none recorded: the identity), so the models
can state their results in the units of ``x`` again.

The layout travels with the table as JSON in the Arrow schema metadata under
``b"xpcompute"``, so a Parquet file written by any engine can be read back
("decompressed") and fitted without outside knowledge.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from xpcompute.compression.transform import IDENTITY, ColumnTransform
from xpcompute.errors import InputError

META_KEY = b"xpcompute"
COUNT_COLUMN = "_n"
ROW_KEY = "_row"
SCHEMA_VERSION = 1

Kind = Literal["moments", "distribution", "panel", "events"]


def monomials(n_covariates: int, max_y: int = 2, max_total: int = 4) -> tuple[tuple[int, ...], ...]:
    """Exponent vectors ``(ey, e1, .., ek)``, in a fixed order: by total degree, then lexicographic."""
    if n_covariates == 0:
        return tuple((e,) for e in range(max_y + 1))
    out = []
    for exps in itertools.product(range(max_total + 1), repeat=n_covariates + 1):
        if exps[0] <= max_y and sum(exps) <= max_total:
            out.append(tuple(exps))
    return tuple(sorted(out, key=lambda e: (sum(e), tuple(-x for x in e))))


def moment_column(metric: str, exponents: tuple[int, ...]) -> str:
    """Column name of one monomial sum, e.g. ``revenue__m_1_1`` = sum(revenue * covariate)."""
    return f"{metric}__m_" + "_".join(str(e) for e in exponents)


@dataclass(frozen=True)
class MetricLayout:
    """Which monomials of which variables a metric's columns hold."""

    metric: str
    covariates: tuple[str, ...] = ()
    exponents: tuple[tuple[int, ...], ...] = ()
    #: transforms of (metric, *covariates); empty when every variable is stored as is
    transforms: tuple[ColumnTransform, ...] = ()

    @classmethod
    def build(
        cls, metric: str, covariates: tuple[str, ...] = (), transforms: tuple[ColumnTransform, ...] = ()
    ) -> MetricLayout:
        if transforms and len(transforms) != len(covariates) + 1:
            raise InputError(f"{metric}: {len(transforms)} transforms for {len(covariates) + 1} variables")
        if all(t.is_identity for t in transforms):
            transforms = ()
        return cls(metric=metric, covariates=covariates, exponents=monomials(len(covariates)), transforms=transforms)

    def transform(self, variable: int) -> ColumnTransform:
        """Transform of variable ``variable`` (0 = the metric, 1.. = the covariates in order)."""
        return self.transforms[variable] if self.transforms else IDENTITY

    def column(self, *exponents: int) -> str:
        if tuple(exponents) not in self.exponents:
            raise KeyError(f"{self.metric}: monomial {exponents} is not stored")
        return moment_column(self.metric, tuple(exponents))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(moment_column(self.metric, e) for e in self.exponents)

    def count_column(self) -> str:
        return moment_column(self.metric, (0,) * (len(self.covariates) + 1))


@dataclass(frozen=True)
class CompressedLayout:
    """Everything needed to interpret a compressed table."""

    kind: Kind
    keys: tuple[str, ...]
    metrics: dict[str, MetricLayout]
    n_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": SCHEMA_VERSION,
                "kind": self.kind,
                "keys": list(self.keys),
                "metrics": {
                    m: {
                        "covariates": list(lay.covariates),
                        "exponents": [list(e) for e in lay.exponents],
                        **({"transforms": [t.to_json() for t in lay.transforms]} if lay.transforms else {}),
                    }
                    for m, lay in self.metrics.items()
                },
                "n_rows": self.n_rows,
                "dropped": self.dropped,
                "extra": self.extra,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> CompressedLayout:
        raw = json.loads(text)
        if raw.get("version") != SCHEMA_VERSION:
            raise InputError(f"compressed table has schema version {raw.get('version')}, expected {SCHEMA_VERSION}")
        metrics = {
            m: MetricLayout(
                metric=m,
                covariates=tuple(v["covariates"]),
                exponents=tuple(tuple(e) for e in v["exponents"]),
                transforms=tuple(ColumnTransform.from_json(t) for t in v.get("transforms", ())),
            )
            for m, v in raw["metrics"].items()
        }
        return cls(
            kind=raw["kind"],
            keys=tuple(raw["keys"]),
            metrics=metrics,
            n_rows=int(raw["n_rows"]),
            dropped={k: int(v) for k, v in raw.get("dropped", {}).items()},
            extra=raw.get("extra", {}),
        )


@dataclass(frozen=True)
class CompressedTable:
    """An Arrow table of sufficient statistics plus its layout."""

    table: pa.Table
    layout: CompressedLayout

    @property
    def n_groups(self) -> int:
        return self.table.num_rows

    @property
    def compression_ratio(self) -> float:
        """Input rows per compressed row (the design-principles post's headline number)."""
        return self.layout.n_rows / max(self.table.num_rows, 1)

    def with_metadata(self) -> pa.Table:
        """The table with its layout embedded, ready for Parquet."""
        meta = dict(self.table.schema.metadata or {})
        meta[META_KEY] = self.layout.to_json().encode()
        return self.table.replace_schema_metadata(meta)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> CompressedTable:
        """Read the layout back from a table written by ``with_metadata`` (or by SQL stage 2)."""
        meta = table.schema.metadata or {}
        if META_KEY not in meta:
            raise InputError("table has no xpcompute layout metadata: it was not written by a compressor")
        return cls(table=table, layout=CompressedLayout.from_json(meta[META_KEY]))
