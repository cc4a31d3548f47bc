"""The experiment spec: everything stage 1 and stage 2 need to know about one A/B test.

It is the pydantic edge of the pipeline, loadable from YAML
(``examples/streaming_experiment.yaml``). Validation resolves every name
against the metrics repo and every referenced source against ``sources``,
and its messages say what to change in the spec.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xpcompute.errors import InputError
from xpcompute.metrics import get_covariate, get_dimension, get_metric
from xpcompute.metrics.base import IDENTIFIER, Metric, SqlContext
from xpcompute.pipeline.slices import SliceFilter

EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_WINDOW_DAYS = 366


def _identifier(value: str, role: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{role} {value!r} must be a lowercase identifier (letters, digits, underscores; starts with a letter)"
        )
    return value


class SourceSpec(BaseModel):
    """Where one raw table lives: a Parquet file or folder, local or ``s3://bucket/key``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(min_length=1)
    user_column: str = "user_id"
    date_column: str = "event_date"

    @field_validator("user_column", "date_column")
    @classmethod
    def _columns(cls, v: str) -> str:
        return _identifier(v, "source column")


class AllocationSpec(BaseModel):
    """Which source assigns users to cells, and its column names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = "allocations"
    cell_column: str = "cell"

    @field_validator("cell_column")
    @classmethod
    def _column(cls, v: str) -> str:
        return _identifier(v, "allocation cell_column")


class WindowSpec(BaseModel):
    """The analysis window (inclusive dates) and the pre-period length used by covariates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date
    pre_days: int = Field(default=7, ge=0, le=MAX_WINDOW_DAYS)

    @model_validator(mode="after")
    def _order(self) -> WindowSpec:
        if self.end < self.start:
            raise ValueError(f"window end {self.end} is before start {self.start}; swap them")
        if self.days > MAX_WINDOW_DAYS:
            raise ValueError(f"window spans {self.days} days; at most {MAX_WINDOW_DAYS} are supported")
        return self

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def pre_start(self) -> date:
        return self.start - timedelta(days=self.pre_days)

    @property
    def pre_end(self) -> date:
        return self.start - timedelta(days=1)


class ExperimentSpec(BaseModel):
    """One experiment: id, allocation, cells, window, sources, dimensions, covariates and metrics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    description: str = ""
    allocation: AllocationSpec = AllocationSpec()
    users_source: str = Field(default="users", description="Source holding one row of dimensions per user.")
    cells: tuple[str, ...] = Field(min_length=2)
    control: str
    window: WindowSpec
    sources: dict[str, SourceSpec]
    dimensions: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    metrics: tuple[str, ...] = Field(min_length=1)
    daily: bool = Field(default=True, description="Also build the user-by-day table for dynamic effects.")
    precompute: tuple[SliceFilter, ...] = Field(
        default=(SliceFilter(),), description="Slices compressed as soon as the analysis is created."
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not EXPERIMENT_ID.match(v):
            raise ValueError(f"id {v!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        return v

    @field_validator("cells")
    @classmethod
    def _cells(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"cells {list(v)} repeat a name; list each cell once")
        for cell in v:
            if not cell or len(cell) > 64 or not cell.isprintable():
                raise ValueError(f"cell {cell!r} must be 1-64 printable characters")
        return v

    @field_validator("sources")
    @classmethod
    def _source_names(cls, v: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in v:
            _identifier(name, "source name")
        return v

    @model_validator(mode="after")
    def _references(self) -> ExperimentSpec:
        problems: list[str] = []
        if self.control not in self.cells:
            problems.append(f"control {self.control!r} is not one of the cells {list(self.cells)}; add it to cells")
        for role, names, getter in (
            ("metrics", self.metrics, get_metric),
            ("dimensions", self.dimensions, get_dimension),
            ("covariates", self.covariates, get_covariate),
        ):
            if len(set(names)) != len(names):
                problems.append(f"{role} lists a name twice: {list(names)}")
            for name in names:
                try:
                    getter(name)
                except InputError as exc:
                    problems.append(f"{role}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        needed = {self.allocation.source: "allocation", self.users_source: "users_source"}
        for m in self.metrics:
            for src in get_metric(m).sources():
                needed.setdefault(src, f"metric {m}")
        for c in self.covariates:
            for src in get_covariate(c).sources():
                needed.setdefault(src, f"covariate {c}")
        for d in self.dimensions:
            needed.setdefault(get_dimension(d).source, f"dimension {d}")
        missing = [f"{src!r} (used by {who})" for src, who in needed.items() if src not in self.sources]
        if missing:
            raise ValueError(
                f"sources {', '.join(missing)} are not declared; add them under 'sources:' with a uri, "
                f"declared: {', '.join(self.sources) or '(none)'}"
            )
        for s in self.precompute:
            try:
                s.check(self)
            except InputError as exc:
                raise ValueError(f"precompute slice {s.label()!r}: {exc}") from exc
        return self

    # -- derived views -------------------------------------------------------
    def metric_objects(self) -> list[Metric]:
        return [get_metric(m) for m in self.metrics]

    def covariates_for(self, metric: str) -> tuple[str, ...]:
        """The declared covariates that adjust ``metric`` (CUPED), in declaration order."""
        return tuple(c for c in self.covariates if metric in get_covariate(c).targets)

    def compressed_covariates(self, metric: str) -> tuple[str, ...]:
        """Continuous columns stage 2 keeps cross-moments of, for ``metric`` (ratio denominators first)."""
        return get_metric(metric).compressed_covariates(self.covariates_for(metric))

    def sql_context(self) -> SqlContext:
        return SqlContext(window_start=self.window.start, window_end=self.window.end)

    def analysis_columns(self) -> list[str]:
        """Every per-user column of the analysis table, in table order after the keys."""
        cols: list[str] = []
        for m in self.metric_objects():
            cols += [c.name for c in m.columns()]
        cols += [c.name for cov in self.covariates for c in get_covariate(cov).columns()]
        return cols

    # -- loading -------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentSpec:
        """Load a spec; relative local source URIs resolve against the YAML file's folder."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise InputError(f"experiment spec {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise InputError(f"experiment spec {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise InputError(f"experiment spec {path} must be a YAML mapping with id, cells, control, window, ...")
        for src in (raw.get("sources") or {}).values():
            if isinstance(src, dict) and isinstance(src.get("uri"), str):
                uri = src["uri"]
                if "://" not in uri and not Path(uri).is_absolute():
                    src["uri"] = str((path.parent / uri).resolve())
        return cls.parse(raw, origin=str(path))

    @classmethod
    def parse(cls, raw: dict[str, Any], origin: str = "experiment spec") -> ExperimentSpec:
        """Validate a mapping; pydantic's errors become one ``InputError`` naming each field to fix."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                msg = str(err["msg"]).removeprefix("Value error, ")
                lines.append(f"  {where}: {msg}")
            raise InputError(f"{origin} is invalid:\n" + "\n".join(lines)) from exc


__all__ = ["AllocationSpec", "ExperimentSpec", "SourceSpec", "WindowSpec"]
