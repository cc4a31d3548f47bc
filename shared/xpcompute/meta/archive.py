"""The experiment archive: every registered version, stage-1 table and analysis of an experiment, addressable.

Nothing here stores anything new: the archive *is* what the coordinator already
keeps, read back by experiment.

* **versions**: ``experiments/{id}/versions/{n}.json`` (``storage/versions.py``), immutable, never deleted;
  an analysis names the version it was planned from, so its metric definitions stay readable forever.
* **stage-1 tables**: ``{id}/analysis`` (and ``{id}/user_day``), one current run per experiment; its
  manifest records the spec it was built from. A later stage-1 run replaces it, so an analysis of an older
  version is replayed from its raw sources (``meta.replay``), never from a table of another version.
* **analyses**: the state store's analysis and job records, plus ``analyses/{analysis}/`` in the object
  store (request, compressed slices, cubes, fit results, scorecard) and the experiment's sequential look
  ``experiments/{id}/looks/{analysis}.json``.

Retention: nothing expires by itself. An analysis stays until ``delete_analysis`` removes its state records
and every object derived for it (not the experiment's versions, its stage-1 tables, or other analyses).
A running analysis is refused (its workers would write again); cancel or let it finish first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xpcompute.coordinator.jobs import Analysis, AnalysisState
from xpcompute.errors import ConflictError, NotFoundError, StorageError
from xpcompute.storage import keys

if TYPE_CHECKING:
    from xpcompute.coordinator.scorecard import Scorecard
    from xpcompute.coordinator.service import Coordinator


@dataclass(frozen=True)
class ArchivedAnalysis:
    """One analysis of an experiment as the archive lists it."""

    analysis_id: str
    experiment_id: str
    experiment_version: int | None
    state: str
    created_at: float
    finished_at: float | None
    metrics: tuple[str, ...]
    slices: int
    error: str | None = None

    @classmethod
    def of(cls, a: Analysis) -> ArchivedAnalysis:
        request = a.request or {}
        return cls(a.analysis_id, a.experiment_id, a.experiment_version, a.state.value, a.created_at, a.finished_at,
                   tuple(request.get("metrics") or ()), len(request.get("slices") or ()), a.error)

    def to_json_dict(self) -> dict[str, Any]:
        return {"analysis_id": self.analysis_id, "experiment_id": self.experiment_id,
                "experiment_version": self.experiment_version, "state": self.state, "created_at": self.created_at,
                "finished_at": self.finished_at, "metrics": list(self.metrics), "slices": self.slices,
                "error": self.error}


@dataclass(frozen=True)
class DeletedAnalysis:
    """What ``delete_analysis`` removed."""

    analysis_id: str
    experiment_id: str
    state_records: int
    objects: int
    keys: tuple[str, ...] = field(default=())

    def to_json_dict(self) -> dict[str, Any]:
        return {"analysis_id": self.analysis_id, "experiment_id": self.experiment_id,
                "state_records": self.state_records, "objects": self.objects}


def analyses_of(coordinator: Coordinator, experiment_id: str, state: AnalysisState | None = None) -> list[ArchivedAnalysis]:
    """Every analysis of ``experiment_id`` (newest first), optionally only those in ``state``.

    ``NotFoundError`` when the experiment was never registered and has no analysis (a typo, most likely).
    """
    keys.experiment_id(experiment_id)
    found = [ArchivedAnalysis.of(a) for a in coordinator.state.list_analyses(state) if a.experiment_id == experiment_id]
    if not found and coordinator.experiment_version(experiment_id) is None:
        raise NotFoundError(f"experiment {experiment_id!r} is not registered and has no analyses")
    return sorted(found, key=lambda a: (a.created_at, a.analysis_id), reverse=True)


def latest_completed(coordinator: Coordinator, experiment_id: str, metric: str | None = None) -> Analysis | None:
    """The newest SUCCEEDED analysis of the experiment (that analysed ``metric``, when given), or ``None``."""
    for entry in analyses_of(coordinator, experiment_id, AnalysisState.SUCCEEDED):
        if metric is None or metric in entry.metrics:
            return coordinator.state.get_analysis(entry.analysis_id)
    return None


def stage1_tables(coordinator: Coordinator, experiment_id: str) -> dict[str, Any]:
    """The experiment's published stage-1 tables: run, rows, creation time and spec hash (``None`` if absent)."""
    from xpcompute.coordinator.ledger import table_spec_hash
    from xpcompute.pipeline.tables import open_table

    out: dict[str, Any] = {}
    for label, key in (("analysis", keys.analysis_table(experiment_id)), ("user_day", keys.user_day_table(experiment_id))):
        try:
            table = open_table(key, coordinator.store)
        except NotFoundError:
            out[label] = None
            continue
        out[label] = {"key": key, "run": table.run_id, "rows": table.num_rows,
                      "created_at": table.manifest.get("created_at"), "spec_hash": table_spec_hash(table.manifest)}
    return out


def delete_analysis(coordinator: Coordinator, analysis_id: str) -> DeletedAnalysis:
    """Remove one finished analysis: its state records and every object derived for it, nothing else.

    Objects: ``analyses/{id}/`` (request, slices, cubes, results, scorecard) and its sequential look
    ``experiments/{experiment}/looks/{id}.json``. ``ConflictError`` while it is RUNNING; ``NotFoundError``
    when it does not exist.
    """
    analysis = coordinator.state.get_analysis(analysis_id)
    if analysis.state == AnalysisState.RUNNING:
        raise ConflictError(f"analysis {analysis_id} is still running; delete it once it has finished "
                            "(its workers would write its results again)")
    prefix = keys.analysis_prefix(analysis_id)
    removed = coordinator.store.list(prefix)
    objects = coordinator.store.delete_prefix(prefix)
    look = keys.experiment_look(analysis.experiment_id, analysis_id)
    if coordinator.store.exists(look):
        coordinator.store.delete(look)
        removed.append(look)
        objects += 1
    records = coordinator.state.delete_analysis(analysis_id)
    return DeletedAnalysis(analysis_id, analysis.experiment_id, records, objects, tuple(removed))


def stored_scorecard(coordinator: Coordinator, analysis_id: str) -> Scorecard:
    """The finalized scorecard of an analysis (``Coordinator.results``), refused while it runs."""
    analysis = coordinator.state.get_analysis(analysis_id)
    if analysis.state == AnalysisState.RUNNING:
        raise ConflictError(f"analysis {analysis_id} is still running; the archive reads finished analyses")
    return coordinator.results(analysis_id)


def describe(coordinator: Coordinator, experiment_id: str) -> dict[str, Any]:
    """One experiment's archive as JSON: versions, stage-1 tables, analyses."""
    versions = [{"version": v.version, "spec_hash": v.spec_hash, "created_at": v.created_at}
                for v in coordinator.experiment_versions(experiment_id)]
    return {"experiment_id": experiment_id, "versions": versions, "tables": stage1_tables(coordinator, experiment_id),
            "analyses": [a.to_json_dict() for a in analyses_of(coordinator, experiment_id)]}


def request_of(coordinator: Coordinator, analysis_id: str) -> dict[str, Any]:
    """The stored request of an analysis (``analyses/{id}/request.json``), else its state record's request."""
    try:
        raw = json.loads(coordinator.store.get_bytes(keys.analysis_request(analysis_id)))
        if isinstance(raw, dict):
            return raw
    except (NotFoundError, StorageError, ValueError):
        pass
    return dict(coordinator.state.get_analysis(analysis_id).request)


__all__ = [
    "ArchivedAnalysis", "DeletedAnalysis", "analyses_of", "delete_analysis", "describe", "latest_completed",
    "request_of", "stage1_tables", "stored_scorecard",
]
