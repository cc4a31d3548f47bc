"""Every object-store key the service reads or writes, built in one place.

Layout (relative to the store root, ``XPCOMPUTE_OBJECTS``)::

    experiments/<experiment_id>/experiment.json        the experiment spec (optional)
    <experiment_id>/analysis/...                        stage 1's analysis table (``xpcompute.storage.keys``)
    analyses/<analysis_id>/request.json                 the analysis request, verbatim (reproducibility)
    analyses/<analysis_id>/slices/<slice_id>.parquet    one compressed slice (stage 2 output)
    analyses/<analysis_id>/cubes/<signature>.parquet    moments by every dimension (the ``cube`` engine)
    analyses/<analysis_id>/results/<slice_id>/<metric>.<model>.json   one fit's result records
    analyses/<analysis_id>/scorecard.json               the finalized scorecard

Keys are deterministic in the job's identity (never in the attempt), so a
retried or duplicated job overwrites its own object with the same content
instead of adding a second result.
"""

from __future__ import annotations

import re

from xpcompute.errors import InputError

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _part(value: str, role: str) -> str:
    if not _PART.match(value) or ".." in value:
        raise InputError(f"{role} {value!r} must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return value


def experiment_spec(experiment_id: str) -> str:
    return f"experiments/{_part(experiment_id, 'experiment id')}/experiment.json"


def analysis_table(experiment_id: str) -> str:
    """Where stage 1 publishes the analysis table (the pipeline owns that layout)."""
    from xpcompute.storage import keys as storage_keys

    return storage_keys.analysis_table(_part(experiment_id, "experiment id"))


def analysis_prefix(analysis_id: str) -> str:
    return f"analyses/{_part(analysis_id, 'analysis id')}/"


def analysis_request(analysis_id: str) -> str:
    return analysis_prefix(analysis_id) + "request.json"


def compressed_slice(analysis_id: str, slice_id: str) -> str:
    return analysis_prefix(analysis_id) + f"slices/{_part(slice_id, 'slice id')}.parquet"


def cube(analysis_id: str, signature: str) -> str:
    return analysis_prefix(analysis_id) + f"cubes/{_part(signature, 'cube signature')}.parquet"


def fit_result(analysis_id: str, slice_id: str, metric: str, model: str) -> str:
    return analysis_prefix(analysis_id) + (
        f"results/{_part(slice_id, 'slice id')}/{_part(metric, 'metric')}.{_part(model, 'model')}.json"
    )


def scorecard(analysis_id: str) -> str:
    return analysis_prefix(analysis_id) + "scorecard.json"
