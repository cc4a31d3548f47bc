"""The experiment spec: everything stage 1 and stage 2 need to know about one A/B test.

It is the pydantic edge of the pipeline, loadable from YAML
(``examples/streaming_experiment.yaml``, ``examples/ecommerce/experiment.yaml``;
every field is documented in ``docs/experiment-yaml.md``). Validation resolves
every name against the experiment's own declarations and the metrics repo, and
every referenced source against ``sources``; its messages say what to change.

Metrics, covariates and dimensions are either names of Python classes
(the built-in catalog, or a team's plugin modules named under ``plugins:``) or
declared inline as mappings (``metrics.declared``). Parsing moves inline
declarations into ``metric_definitions`` / ``covariate_definitions`` /
``dimension_definitions`` and leaves ``metrics``/``covariates``/``dimensions``
as plain name lists, so the stored JSON form parses back to the same spec and
every consumer resolves a name through the spec (``metric``, ``covariate``,
``dimension``) rather than a process-wide registry: two experiments may
declare different metrics of the same name.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from xpcompute.decision.roles import DecisionSpec, RolesSpec
from xpcompute.errors import InputError
from xpcompute.inference.settings import InferenceSpec
from xpcompute.metrics import get_covariate, get_dimension, get_metric
from xpcompute.metrics.base import IDENTIFIER, Covariate, Dimension, Metric, RatioMetric, SqlContext
from xpcompute.metrics.declared import (
    DeclaredCovariate,
    DeclaredDimension,
    DeclaredEventQuantile,
    DeclaredMetric,
    DeclaredRatio,
    MetricDeclaration,
    build_covariate,
    build_dimension,
    build_event_quantile,
    build_metric,
    build_ratio,
)
from xpcompute.metrics.registry import registered_dimension
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.quasi import QuasiSpec, with_quasi_defaults
from xpcompute.spec import FitSpec

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
    """Which source assigns units to cells, its cell column, and when each unit was first exposed.

    With ``exposure_column`` (a timestamp or date column of the allocation
    source), each unit's analysis starts at its first exposure (the earliest
    value, or the window start if that is later) and its pre-period is the
    ``pre_days`` days before that; units first exposed after the window end
    are left out. Without it, every unit starts at the window start.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = "allocations"
    cell_column: str = "cell"
    exposure_column: str | None = None

    @field_validator("cell_column", "exposure_column")
    @classmethod
    def _column(cls, v: str | None) -> str | None:
        return None if v is None else _identifier(v, "allocation column")


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
    users_source: str = Field(
        default="users", description="Source holding one row of dimensions per user (default: the source named "
        "'users', else the allocation source).")
    cells: tuple[str, ...] = Field(min_length=2)
    control: str
    window: WindowSpec
    sources: dict[str, SourceSpec]
    dimensions: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    metrics: tuple[str, ...] = Field(min_length=1)
    metric_definitions: tuple[MetricDeclaration, ...] = ()
    covariate_definitions: tuple[DeclaredCovariate, ...] = ()
    dimension_definitions: tuple[DeclaredDimension, ...] = ()
    shares: dict[str, float] | None = Field(
        default=None, description="Planned share of units per cell, for the sample-ratio check (default: equal)."
    )
    plugins: tuple[str, ...] = Field(default=(), description="Python modules of the team's metrics repo to import.")
    inference: InferenceSpec = Field(
        default_factory=InferenceSpec, description="Sequential testing, Bayesian results, shrinkage and priors."
    )
    roles: RolesSpec = Field(
        default_factory=RolesSpec,
        description="Metric roles for the ship decision: goal, guardrails (with margins), secondary, diagnostic; "
        "unnamed metrics take their class's role, else secondary.",
    )
    decision: DecisionSpec = Field(
        default_factory=DecisionSpec, description="The decision rule (default risk_aware) and its settings."
    )
    daily: bool = Field(default=True, description="Also build the user-by-day table for dynamic effects.")
    design: Literal["randomized", "quasi"] = Field(
        default="randomized",
        description="'quasi': no random assignment; a group column and a change date (the 'quasi' block), "
        "analysed by difference in differences (xpcompute.quasi).",
    )
    quasi: QuasiSpec | None = Field(default=None, description="Group column, treated values, change date, period.")
    precompute: tuple[SliceFilter, ...] = Field(
        default=(SliceFilter(),), description="Slices compressed as soon as the analysis is created."
    )
    _objects: dict[tuple[str, str], object] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_declarations(cls, raw: Any) -> Any:
        """Move inline mappings of ``metrics``/``covariates``/``dimensions`` into the ``*_definitions`` fields.

        Plugins load first, so their names count as registered. A bare
        dimension name that no Python class registers is a column of the users
        source with that name.
        """
        if not isinstance(raw, dict):
            return raw
        from xpcompute.plugins import load_plugins

        plugins = raw.get("plugins") or ()
        if isinstance(plugins, list | tuple):
            load_plugins([str(p) for p in plugins])
        out = with_quasi_defaults(dict(raw))
        sources = out.get("sources")
        if "users_source" not in out and isinstance(sources, dict) and "users" not in sources:
            # no per-unit table: the allocation source is the one source with a row per unit (its dimensions
            # are its columns), so an experiment needs no users table to be valid
            alloc = out.get("allocation")
            source = alloc.get("source") if isinstance(alloc, dict) else getattr(alloc, "source", None)
            out["users_source"] = source or AllocationSpec().source
        for field, definitions in (
            ("metrics", "metric_definitions"), ("covariates", "covariate_definitions"),
            ("dimensions", "dimension_definitions"),
        ):
            entries = out.get(field)
            if not isinstance(entries, list | tuple):
                continue
            names: list[Any] = []
            defs = [_tagged(d) if field == "metrics" else d for d in out.get(definitions) or ()]
            for entry in entries:
                if isinstance(entry, dict):
                    entry = _tagged(entry) if field == "metrics" else dict(entry)
                    defs.append(entry)
                    names.append(entry.get("name"))
                elif field == "dimensions" and isinstance(entry, str) and not _python_dimension(entry, raw) and \
                        not any(isinstance(d, dict) and d.get("name") == entry for d in defs):
                    defs.append({"name": entry})
                    names.append(entry)
                else:
                    names.append(entry)
            out[field] = names
            if defs:
                out[definitions] = defs
        return out

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
        if self.shares is not None and (
            set(self.shares) != set(self.cells) or any(v <= 0 for v in self.shares.values())
        ):
            problems.append(f"shares must give a positive planned share for each cell {list(self.cells)}, "
                            f"got {self.shares}")
        for role, definitions in (
            ("metrics", self.metric_definitions), ("covariates", self.covariate_definitions),
            ("dimensions", self.dimension_definitions),
        ):
            declared = [d.name for d in definitions]
            if len(set(declared)) != len(declared):
                problems.append(f"{role} declares a name twice: {declared}")
        for role, names, getter in (
            ("metrics", self.metrics, self.metric),
            ("dimensions", self.dimensions, self.dimension),
            ("covariates", self.covariates, self.covariate),
        ):
            if len(set(names)) != len(names):
                problems.append(f"{role} lists a name twice: {list(names)}")
            for name in names:
                try:
                    getter(name)
                except InputError as exc:
                    problems.append(f"{role}: {exc}")
        unknown_priors = sorted(set(self.inference.priors) - set(self.metrics))
        if unknown_priors:
            problems.append(f"inference.priors names {unknown_priors}, which are not metrics of this experiment")
        unknown_roles = self.roles.unknown(self.metrics)
        if unknown_roles:
            problems.append(f"roles names {unknown_roles}, which are not metrics of this experiment; use names "
                            f"from metrics: {list(self.metrics)}")
        from xpcompute.decision.registry import has_rule, rule_names

        if not has_rule(self.decision.rule):
            problems.append(f"decision.rule {self.decision.rule!r} is not registered; use one of {rule_names()} "
                            "(a plugin module can register its own with xpcompute.decision.register_rule)")
        from xpcompute.quasi import check_experiment

        problems += check_experiment(self)
        if problems:
            raise ValueError("; ".join(problems))
        if self.roles.names() or any(getattr(self.metric(m), "role", None) for m in self.metrics):
            from xpcompute.decision import roles_for

            try:
                roles_for(self.metrics, self)
            except ValueError as exc:
                problems.append(f"roles: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        for decl in self.covariate_definitions:
            for target in self.covariate(decl.name).targets:
                if target not in self.metrics:
                    problems.append(f"covariate {decl.name!r} adjusts {target!r}, which is not a metric of this "
                                    "experiment; list it under metrics or change adjusts")
        if problems:
            raise ValueError("; ".join(problems))
        needed = {self.allocation.source: "allocation", self.users_source: "users_source"}
        for m in self.metrics:
            for src in self.metric(m).sources():
                needed.setdefault(src, f"metric {m}")
        for c in self.covariates:
            for src in self.covariate(c).sources():
                needed.setdefault(src, f"covariate {c}")
        for d in self.dimensions:
            needed.setdefault(self.dimension(d).source, f"dimension {d}")
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

    # -- name resolution: the experiment's own declarations, then the registry ----------
    def _resolve(self, kind: str, name: str, build: Any) -> Any:
        key = (kind, name)
        if key not in self._objects:
            self._objects[key] = build()
        return self._objects[key]

    def metric(self, name: str) -> Metric:
        """The metric ``name``: declared in this spec, or a registered Python class (catalog or plugin)."""
        decl = next((d for d in self.metric_definitions if d.name == name), None)
        if decl is None:
            return self._resolve("metric", name, lambda: get_metric(name))
        if isinstance(decl, DeclaredMetric):
            return self._resolve("metric", name, lambda: build_metric(decl))
        if isinstance(decl, DeclaredEventQuantile):
            return self._resolve("metric", name, lambda: build_event_quantile(decl))
        ratio: DeclaredRatio = decl
        for part in (ratio.numerator, ratio.denominator):
            if part == name:
                raise InputError(f"ratio {name!r} names itself as its numerator or denominator")
        return self._resolve(
            "metric", name, lambda: build_ratio(ratio, self.metric(ratio.numerator), self.metric(ratio.denominator))
        )

    def covariate(self, name: str) -> Covariate:
        decl = next((d for d in self.covariate_definitions if d.name == name), None)
        if decl is None:
            return self._resolve("covariate", name, lambda: get_covariate(name))
        return self._resolve("covariate", name, lambda: build_covariate(decl, self.metric(decl.metric)))

    def dimension(self, name: str) -> Dimension:
        decl = next((d for d in self.dimension_definitions if d.name == name), None)
        if decl is None:
            return self._resolve("dimension", name, lambda: get_dimension(name))
        if decl.source is not None and decl.source not in (self.users_source, self.allocation.source):
            raise InputError(
                f"dimension {name!r} reads source {decl.source!r}; a dimension is a column of the users source "
                f"({self.users_source!r}) or of the allocation source ({self.allocation.source!r})"
            )
        return self._resolve("dimension", name, lambda: build_dimension(decl, self.users_source))

    # -- derived views -------------------------------------------------------
    def metric_objects(self) -> list[Metric]:
        return [self.metric(m) for m in self.metrics]

    def covariates_for(self, metric: str) -> tuple[str, ...]:
        """The declared covariates that adjust ``metric`` (CUPED), in declaration order."""
        return tuple(c for c in self.covariates if metric in self.covariate(c).targets)

    def compressed_covariates(self, metric: str) -> tuple[str, ...]:
        """Continuous columns stage 2 keeps cross-moments of, for ``metric`` (ratio denominators first)."""
        return self.metric(metric).compressed_covariates(self.covariates_for(metric))

    def fit_specs_for(self, metric: str, treatment: str = "cell", control: str | None = None) -> list[FitSpec]:
        """The metric's declared models, plus ``ols`` (CUPED) when the experiment declares covariates for it.

        CUPED is then the metric's headline estimate; the unadjusted model stays
        next to it so the scorecard can say how much the covariates cut the SE.
        """
        if self.quasi is not None:  # no random assignment: difference in differences only
            from xpcompute import quasi

            return quasi.fit_specs(self, metric, treatment, control)
        m = self.metric(metric)
        covariates = self.covariates_for(metric)
        specs = list(m.fit_specs(covariates, treatment, control))
        if covariates and not isinstance(m, RatioMetric) and all(s.model != "ols" for s in specs):
            specs.append(FitSpec(metric=metric, treatment=treatment, control=control, model="ols",
                                 covariates=covariates))
        return specs

    def metric_info(self, metric: str) -> dict[str, object]:
        """Display metadata of one metric (unit, format, direction, kind, covariates) for scorecards."""
        out = self.metric(metric).display()
        if out.get("kind") == "simple" and self.metric(metric).aggregation in ("any", "none"):
            out["kind"] = "proportion"
        out["covariates"] = list(self.covariates_for(metric))
        return out

    def higher_is_better(self) -> dict[str, bool]:
        """Each metric's declared direction (metrics with none are left out)."""
        out: dict[str, bool] = {}
        for name in self.metrics:
            value = self.metric(name).higher_is_better
            if value is not None:
                out[name] = bool(value)
        return out

    def sql_context(self) -> SqlContext:
        return SqlContext(window_start=self.window.start, window_end=self.window.end)

    def analysis_columns(self) -> list[str]:
        """Every per-user column of the analysis table, in table order after the keys."""
        cols: list[str] = []
        for m in self.metric_objects():
            cols += [c.name for c in m.columns()]
        cols += [c.name for cov in self.covariates for c in self.covariate(cov).columns()]
        return cols

    def __eq__(self, other: object) -> bool:
        """Equal fields make equal specs; the cache of resolved metric objects is not part of a spec."""
        return isinstance(other, ExperimentSpec) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def canonical(self) -> dict[str, Any]:
        """The spec as stored and hashed: JSON without default values.

        Leaving defaults out keeps a spec's identity (its registered version,
        the staleness of its stage-1 table) unchanged when a later release
        adds a field with a default.
        """
        return self.model_dump(mode="json", exclude_defaults=True)

    # -- loading -------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentSpec:
        """Load a spec; relative local source URIs resolve against the YAML file's folder."""
        import yaml  # here: functions read specs stored as JSON and never load YAML

        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise InputError(f"experiment spec {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise InputError(f"experiment spec {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise InputError(f"experiment spec {path} must be a YAML mapping with id, cells, control, window, ...")
        if raw.get("plugins"):
            _add_plugin_folder(path.parent.resolve())
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


def _tagged(entry: Any) -> Any:
    """A declared metric mapping with its ``kind`` (the stored form leaves defaults, and so ``kind``, out)."""
    if not isinstance(entry, dict) or "kind" in entry:
        return entry
    if entry.get("aggregation") == "event_quantile":
        return {**entry, "kind": "event_quantile"}
    return {**entry, "kind": "ratio" if "numerator" in entry or "denominator" in entry else "metric"}


def _python_dimension(name: str, raw: dict[str, Any]) -> bool:
    """Whether a bare dimension name means a registered Python class: one is registered under the name and
    the source it reads is one of this experiment's sources (else the name is a column of the users source,
    so a team's ``country`` column is not mistaken for the streaming catalog's ``country``)."""
    cls = registered_dimension(name)
    sources = raw.get("sources")
    return cls is not None and isinstance(sources, dict) and cls.source in sources


def _add_plugin_folder(folder: Path) -> None:
    """Let ``plugins:`` name modules kept next to the YAML; set in the environment so worker processes see it too."""
    import os

    from xpcompute.plugins import PATH_VAR

    parts = [p for p in os.environ.get(PATH_VAR, "").split(os.pathsep) if p]
    if str(folder) not in parts:
        os.environ[PATH_VAR] = os.pathsep.join([*parts, str(folder)])


__all__ = [
    "AllocationSpec",
    "DeclaredCovariate",
    "DeclaredDimension",
    "DeclaredMetric",
    "DeclaredRatio",
    "ExperimentSpec",
    "SourceSpec",
    "WindowSpec",
]
