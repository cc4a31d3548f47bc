"""Every object key the pipeline writes, built in one place.

Layout under a store root::

    {experiment}/analysis/_MANIFEST.json          published analysis table (stage 1)
    {experiment}/analysis/run-{id}/part-*.parquet its data files, one prefix per run
    {experiment}/user_day/...                     the user-by-day table, same layout
    {experiment}/slices/{run}/{slice}-{sig}.parquet  a compressed slice (stage 2)

A compressed slice's key names the analysis run it was computed from, so a
re-run of stage 1 never serves slices of the previous data.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Sequence

from xpcompute.storage.objects import join_key

MANIFEST = "_MANIFEST.json"
SUCCESS = "_SUCCESS"
ANALYSIS = "analysis"
USER_DAY = "user_day"


def analysis_table(experiment_id: str) -> str:
    return join_key(experiment_id, ANALYSIS)


def user_day_table(experiment_id: str) -> str:
    return join_key(experiment_id, USER_DAY)


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
