"""Every object-store key xpcompute reads or writes, built in one place.

Layout under a store root (``XPCOMPUTE_OBJECTS``)::

    {experiment}/analysis/_MANIFEST.json               published analysis table (stage 1)
    {experiment}/analysis/run-{id}/part-*.parquet      its data files, one prefix per run
    {experiment}/user_day/...                          the user-by-day table, same layout
    {experiment}/slices/{run}/{slice}-{sig}.parquet    a compressed slice computed by the pipeline
    experiments/{experiment}/versions/{n}.json         version n of the registered spec (immutable; put-if-absent)
    experiments/{experiment}/latest.json               pointer to the newest version (a hint; see storage/versions.py)
    experiments/{experiment}/experiment.json           the spec as registered before versions existed (read once, migrated)
    experiments/{experiment}/stage1.building           held by the one stage-1 job building the tables right now
    experiments/{experiment}/looks/{analysis}.json     one look of a sequential test (put-if-absent at finalize)
    analyses/{analysis}/request.json                   the analysis request, verbatim (reproducibility)
    analyses/{analysis}/slices/{slice}.parquet         one compressed slice of an analysis (a slice job)
    analyses/{analysis}/slices/{slice}/{metric}.{distribution|panel}.parquet   its n-tile / panel forms
    analyses/{analysis}/cubes/{signature}.parquet      moments by every dimension (the ``cube`` engine)
                                                       and the segment cube: by cell x dimensions x ``_half``,
                                                       the MD5 half of the unit id (``segments/cube.py``)
    analyses/{analysis}/results/{slice}/{metric}.{model}.json   one fit's result records
    analyses/{analysis}/scorecard.json                 the finalized scorecard

A pipeline slice's key names the analysis run it was computed from, so a
re-run of stage 1 never serves slices of the previous data. Service keys are
deterministic in the job's identity (never in the attempt), so a retried or
duplicated job overwrites its own object with the same content instead of
adding a second result.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Sequence

from xpcompute.errors import InputError
from xpcompute.storage.objects import join_key

MANIFEST = "_MANIFEST.json"
SUCCESS = "_SUCCESS"
ANALYSIS = "analysis"
USER_DAY = "user_day"


def analysis_table(experiment_id: str) -> str:
    return join_key(_part(experiment_id, "experiment id"), ANALYSIS)


def user_day_table(experiment_id: str) -> str:
    return join_key(experiment_id, USER_DAY)


def events_table(experiment_id: str, metric: str) -> str:
    """The stage-1 events table of an event-level quantile metric (``pipeline/events.py``)."""
    return join_key(_part(experiment_id, "experiment id"), f"events.{_part(metric, 'metric')}")


def manifest(table_key: str) -> str:
    return join_key(table_key, MANIFEST)


def success_marker(table_key: str) -> str:
    return join_key(table_key, SUCCESS)


def run_prefix(table_key: str, run_id: str) -> str:
    return join_key(table_key, f"run-{run_id}")


def slice_signature(metrics: Sequence[str], keys: Sequence[str], covariates: dict[str, tuple[str, ...]]) -> str:
    """Short hash of what a compressed slice holds (metrics, keys, covariates per metric)."""
    body = json.dumps({"metrics": sorted(metrics), "keys": list(keys), "covariates": covariates}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def compressed_slice(analysis_key: str, analysis_run: str, slice_id: str, signature: str) -> str:
    """Next to the analysis table: ``{experiment}/analysis`` -> ``{experiment}/slices/{run}/...``."""
    return join_key(posixpath.dirname(analysis_key), "slices", analysis_run, f"{slice_id}-{signature}.parquet")


# ---- service keys (coordinator, functions, notebook) ----
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _part(value: str, role: str) -> str:
    if not _PART.match(value) or ".." in value:
        raise InputError(f"{role} {value!r} must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return value


EXPERIMENTS = "experiments"


def experiment_spec(experiment_id: str) -> str:
    """The pre-versioning location of a registered spec; only read, to migrate it to version 1."""
    return f"{EXPERIMENTS}/{_part(experiment_id, 'experiment id')}/experiment.json"


def versioned(root: str, name: str, version: int) -> str:
    """Version ``version`` of document ``name`` under ``root`` (``storage.versions``): written once, never changed."""
    return join_key(root, _part(name, "name"), "versions", f"{int(version)}.json")


def versioned_pointer(root: str, name: str) -> str:
    """The pointer to the newest version of ``name`` under ``root`` (a hint readers probe past)."""
    return join_key(root, _part(name, "name"), "latest.json")


def experiment_version(experiment_id: str, version: int) -> str:
    return versioned(EXPERIMENTS, experiment_id, version)


def experiment_pointer(experiment_id: str) -> str:
    return versioned_pointer(EXPERIMENTS, experiment_id)


def stage1_claim(experiment_id: str) -> str:
    """The marker a stage-1 job holds (put-if-absent) while it builds the experiment's tables."""
    return f"{EXPERIMENTS}/{_part(experiment_id, 'experiment id')}/stage1.building"


def experiment_look(experiment_id: str, analysis_id: str = "") -> str:
    """One analysis's look at a sequential experiment (written once, at its first finalize); with no
    ``analysis_id``, the prefix under which every look of the experiment lives."""
    prefix = f"{EXPERIMENTS}/{_part(experiment_id, 'experiment id')}/looks/"
    return prefix + f"{_part(analysis_id, 'analysis id')}.json" if analysis_id else prefix


def experiment_id(value: str) -> str:
    """``value`` if it is a valid experiment id for keys, else ``InputError`` naming the rule."""
    return _part(value, "experiment id")


def analysis_prefix(analysis_id: str) -> str:
    return f"analyses/{_part(analysis_id, 'analysis id')}/"


def analysis_request(analysis_id: str) -> str:
    return analysis_prefix(analysis_id) + "request.json"


def analysis_slice(analysis_id: str, slice_id: str) -> str:
    """One compressed slice of an analysis, written by its slice job."""
    return analysis_slices(analysis_id) + f"{_part(slice_id, 'slice id')}.parquet"


def analysis_slices(analysis_id: str) -> str:
    """The prefix under which an analysis's compressed slices (and their second tables) live."""
    return analysis_prefix(analysis_id) + "slices/"


def is_slice_table(analysis_id: str, key: str) -> bool:
    """Whether ``key`` is a slice job's moments table (its last write), as ``analysis_slice`` builds it."""
    rest = key.removeprefix(analysis_slices(analysis_id))
    return rest != key and "/" not in rest and rest.endswith(".parquet")


def analysis_distribution(analysis_id: str, slice_id: str, metric: str, layout: str = "distribution") -> str:
    """A second compressed form of one metric of a slice, written by its slice job next to the moments table.

    ``layout`` is ``"distribution"`` (value-keyed n-tile, for rank and quantile
    models), ``"panel"`` (user x day sums from the user-by-day table, for ``dte``) or ``"events"`` (the event
    histogram of an event-level quantile metric, for ``event_quantile``).
    """
    if layout not in ("distribution", "panel", "events"):
        raise InputError(f"compressed layout {layout!r} has no slice artifact; use 'distribution', 'panel' or 'events'")
    return analysis_prefix(analysis_id) + (
        f"slices/{_part(slice_id, 'slice id')}/{_part(metric, 'metric')}.{layout}.parquet"
    )


def cube(analysis_id: str, signature: str) -> str:
    return analysis_prefix(analysis_id) + f"cubes/{_part(signature, 'cube signature')}.parquet"


def cube_claim(analysis_id: str, signature: str) -> str:
    """The marker a slice job writes (put-if-absent) before it builds the cube at ``cube(..)``."""
    return analysis_prefix(analysis_id) + f"cubes/{_part(signature, 'cube signature')}.building"


def fit_result(analysis_id: str, slice_id: str, metric: str, model: str) -> str:
    return analysis_prefix(analysis_id) + (
        f"results/{_part(slice_id, 'slice id')}/{_part(metric, 'metric')}.{_part(model, 'model')}.json"
    )


def scorecard(analysis_id: str) -> str:
    return analysis_prefix(analysis_id) + "scorecard.json"
