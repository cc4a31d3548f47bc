"""Stage 2 on a real Trino server, when one is configured (``XPCOMPUTE_TRINO_URL``); skipped otherwise.

The test loads a sample of the analysis table into Trino's ``memory`` catalog
(``XPCOMPUTE_TRINO_CATALOG``, default ``memory.default``) with a generated
CREATE TABLE AS VALUES, runs ``compute_slice`` through the Trino engine and
compares with ``compress_moments`` on the same rows, then drops the table.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
from pipeline_helpers import Experiment
from sqlglot import exp

from xpcompute.compression import compress_moments
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.stage1 import Stage1Result
from xpcompute.pipeline.stage2 import compute_slice
from xpcompute.sql.dialects import render, table
from xpcompute.storage.objects import new_token

URL = os.environ.get("XPCOMPUTE_TRINO_URL")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not URL, reason="no Trino server here: set XPCOMPUTE_TRINO_URL=http://user@host:port to run"),
]


def test_compute_slice_on_trino(synth: Experiment, duck_stage1: Stage1Result) -> None:
    from xpcompute.pipeline.engines.trino_engine import TrinoEngine

    metrics = ["streaming_hours", "sessions", "rebuffer_rate", "cancelled"]
    s = SliceFilter.either(country=["US", "CA"])
    columns = ["cell", "country", "device", *dict.fromkeys(v for m in metrics for v in (m, *synth.spec.compressed_covariates(m)))]
    sample = duck_stage1.analysis.read().slice(0, 500).select(columns)
    name = f"{os.environ.get('XPCOMPUTE_TRINO_CATALOG', 'memory.default')}.xp_live_{new_token()}"
    rows = [tuple(r[c] for c in columns) for r in sample.to_pylist()]
    create = exp.Create(
        this=table(name), kind="TABLE",
        expression=exp.select("*").from_(exp.values(rows, alias="t", columns=columns)),
    )
    engine = TrinoEngine(url=URL, tables={"analysis": name})
    cursor = engine.connection.cursor()
    cursor.execute(render(create, "trino"))
    cursor.fetchall()
    try:
        got = compute_slice(duck_stage1.analysis.uri, synth.spec, s, metrics, ["device"], engine=engine)
    finally:
        cursor.execute(render(exp.Drop(this=table(name), kind="TABLE"), "trino"))
        cursor.fetchall()
        engine.close()
    rows_in = sample.filter(s.to_arrow_mask(sample))
    want = compress_moments(rows_in, ["cell", "device"], {m: synth.spec.compressed_covariates(m) for m in metrics})
    assert got.table.column_names == want.table.column_names and got.layout.dropped == want.layout.dropped
    for col in want.table.column_names:
        if pa.types.is_floating(want.table.schema.field(col).type):
            np.testing.assert_allclose(np.asarray(got.table.column(col)), np.asarray(want.table.column(col)), rtol=1e-9)
        else:
            assert got.table.column(col).equals(want.table.column(col))
