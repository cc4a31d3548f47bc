"""Stage 1: the analysis and user-by-day tables, identical on DuckDB and Spark, locally and on S3."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import Experiment, Moto

from xpcompute.errors import ColumnTypeError, InputError, MissingColumnError, NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.stage1 import Stage1Result, run_stage1, stage1_sql
from xpcompute.pipeline.tables import PublishedTable, open_table
from xpcompute.storage.objects import new_token
from xpcompute.synthetic import write_parquet


def read_sorted(table: PublishedTable) -> pa.Table:
    keys = [("user_id", "ascending")] + ([("day", "ascending")] if "day" in table.schema.names else [])
    return table.read().sort_by(keys)


def assert_same_table(a: pa.Table, b: pa.Table) -> None:
    """Same columns, types and values, bit for bit (nullability flags aside: Spark marks COALESCEd columns required)."""
    assert a.column_names == b.column_names
    for name in a.column_names:
        assert a.schema.field(name).type == b.schema.field(name).type, name
        assert a.column(name).combine_chunks().equals(b.column(name).combine_chunks()), name


def test_analysis_table_has_one_row_per_allocated_user(synth: Experiment, duck_stage1: Stage1Result) -> None:
    table = read_sorted(duck_stage1.analysis)
    assert table.num_rows == duck_stage1.analysis.num_rows
    assert len(pc.unique(table.column("user_id"))) == table.num_rows
    assert table.column_names[:6] == ["user_id", "cell", "country", "device", "tenure_bucket", "plan"]
    assert table.schema.field("sessions").type == pa.int64()
    assert table.schema.field("streaming_hours").type == pa.float64()
    assert set(pc.unique(table.column("cell")).to_pylist()) == set(synth.spec.cells)
    assert set(pc.unique(table.column("tenure_bucket")).to_pylist()) == {"0-3m", "3-12m", "1-3y", "3y+"}
    assert table.column("country").null_count == 0


def test_each_ratio_has_its_residual_column_with_the_constant_python_computes(
    synth: Experiment, duck_stage1: Stage1Result,
) -> None:
    """``{ratio}__res = y - c d`` with ``c`` the SQL rule, which must be ``columns.residual_coefficient`` (and
    ``models.fit.with_residual``, the local fits' route) on the same table: one constant on every route."""
    from xpcompute.columns import residual_coefficient
    from xpcompute.models.fit import with_residual

    table = read_sorted(duck_stage1.analysis)
    daily = read_sorted(duck_stage1.user_day) if duck_stage1.user_day is not None else None
    for ratio in ("rebuffer_rate", "hours_per_session"):
        y, d = (np.asarray(table.column(c).to_numpy(), dtype=float) for c in (ratio, f"{ratio}__den"))
        both = np.isfinite(y) & np.isfinite(d)
        c = residual_coefficient(math.fsum(y[both]), math.fsum(d[both]), float(np.abs(y[both]).max()),
                                 float(np.abs(d[both]).max()))
        assert c != 0.0 and abs(c / (y[both].sum() / d[both].sum()) - 1) < 2**-23  # near the ratio, 24 bits
        res = np.asarray(table.column(f"{ratio}__res").to_numpy(zero_copy_only=False), dtype=float)
        assert np.array_equal(res[both], y[both] - c * d[both])
        assert table.column(f"{ratio}__res").null_count == (~both).sum()
        local = with_residual(table.drop_columns([f"{ratio}__res"]), ratio, f"{ratio}__den")
        assert local.column(f"{ratio}__res").equals(table.column(f"{ratio}__res"))
        assert daily is None or f"{ratio}__res" not in daily.column_names  # per-day fits take no ratio


def test_user_day_table_is_zero_filled_and_adds_up(synth: Experiment, duck_stage1: Stage1Result) -> None:
    assert duck_stage1.user_day is not None
    daily = read_sorted(duck_stage1.user_day)
    analysis = read_sorted(duck_stage1.analysis)
    days = synth.spec.window.days
    assert daily.num_rows == analysis.num_rows * days
    assert np.array_equal(np.asarray(daily.column("day").to_numpy()).reshape(-1, days)[0], np.arange(days))
    for name in ("sessions", "long_sessions", "rentals"):
        per_day = np.asarray(daily.column(name).to_numpy()).reshape(-1, days)
        assert np.array_equal(per_day.sum(axis=1), np.asarray(analysis.column(name).to_numpy())), name
    hours = np.asarray(daily.column("streaming_hours").to_numpy()).reshape(-1, days)
    np.testing.assert_allclose(hours.sum(axis=1), analysis.column("streaming_hours").to_numpy(), rtol=1e-12)
    zeros = np.asarray(daily.column("sessions").to_numpy()) == 0
    assert 0.2 < zeros.mean() < 0.9  # most user-days without a session are present as zeros
    for cov in ("pre_sessions", "pre_streaming_hours"):
        per_day = np.asarray(daily.column(cov).to_numpy()).reshape(-1, days)
        assert np.array_equal(per_day[:, 0], np.asarray(analysis.column(cov).to_numpy())) and (per_day == per_day[:, :1]).all()
    assert daily.column("cell").to_pylist()[::days] == analysis.column("cell").to_pylist()


@pytest.mark.spark
def test_duckdb_and_spark_write_identical_tables(duck_stage1: Stage1Result, spark_stage1: Stage1Result) -> None:
    assert_same_table(read_sorted(duck_stage1.analysis), read_sorted(spark_stage1.analysis))
    assert duck_stage1.user_day is not None and spark_stage1.user_day is not None
    assert_same_table(read_sorted(duck_stage1.user_day), read_sorted(spark_stage1.user_day))
    assert spark_stage1.analysis.manifest["engine"] == "spark"


def test_stage1_on_s3_with_duckdb(synth: Experiment, duck_stage1: Stage1Result, moto_s3: Moto) -> None:
    """Raw sources read from S3 and tables published to S3, through moto's server."""
    prefix = f"s3://{moto_s3.bucket}/stage1-{new_token()}"
    uris = write_parquet(synth.data, prefix + "/raw")
    spec = synth.spec.model_copy(update={"sources": {k: v.model_copy(update={"uri": uris[k]}) for k, v in synth.spec.sources.items()}})
    result = run_stage1(spec, prefix + "/out", engine="duckdb")
    assert result.analysis.uri == f"{prefix}/out/{spec.id}/analysis"
    keys = [o["Key"] for o in moto_s3.client().list_objects_v2(Bucket=moto_s3.bucket, Prefix=prefix[len(f"s3://{moto_s3.bucket}/"):])["Contents"]]
    assert any(k.endswith("analysis/_MANIFEST.json") for k in keys) and any(k.endswith("user_day/_SUCCESS") for k in keys)
    assert_same_table(read_sorted(open_table(result.analysis.uri)), read_sorted(duck_stage1.analysis))


@pytest.mark.spark
def test_stage1_on_s3_with_spark(synth: Experiment, duck_stage1: Stage1Result, moto_s3: Moto, spark: Any) -> None:
    """Local Spark stages S3 inputs to disk and uploads its output (no s3a here), with the same result."""
    from xpcompute.pipeline.engines.spark_engine import SparkEngine

    prefix = f"s3://{moto_s3.bucket}/spark-{new_token()}"
    uris = write_parquet(synth.data, prefix + "/raw")
    spec = synth.spec.model_copy(
        update={"sources": {k: v.model_copy(update={"uri": uris[k]}) for k, v in synth.spec.sources.items()}}
    )
    engine = SparkEngine(spark)
    try:
        result = run_stage1(spec, prefix + "/out", engine=engine, daily=False)
        staged = list(engine._scratch)
    finally:
        engine.close()  # drops the temporary views and the local copies of the S3 inputs
    assert staged and not any(Path(d).exists() for d in staged)
    assert result.user_day is None
    assert_same_table(read_sorted(open_table(result.analysis.uri)), read_sorted(duck_stage1.analysis))


def test_stage1_sql_renders_in_every_dialect(synth: Experiment) -> None:
    for dialect in ("duckdb", "spark", "trino"):
        sql = stage1_sql(synth.spec, dialect)
        assert set(sql) == {"analysis", "user_day"}
        assert "CROSS JOIN" in sql["user_day"] and "LEFT JOIN" in sql["analysis"]
    assert "DATEDIFF(DAY" in stage1_sql(synth.spec, "spark")["user_day"]


def _with_source(spec: ExperimentSpec, name: str, uri: str) -> ExperimentSpec:
    sources = dict(spec.sources)
    sources[name] = sources[name].model_copy(update={"uri": uri})
    return spec.model_copy(update={"sources": sources})


def test_missing_source_is_named(synth: Experiment, tmp_path: Path) -> None:
    spec = _with_source(synth.spec, "billing", str(tmp_path / "no" / "billing.parquet"))
    with pytest.raises(NotFoundError, match="source 'billing' not found at"):
        run_stage1(spec, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_column_and_type_mismatch_are_named(synth: Experiment, tmp_path: Path) -> None:
    playback = synth.data.playback
    pq.write_table(playback.drop_columns(["title_id"]), tmp_path / "no_title.parquet")
    with pytest.raises(MissingColumnError, match=r"source 'playback' .* has no column 'title_id'"):
        run_stage1(_with_source(synth.spec, "playback", str(tmp_path / "no_title.parquet")), str(tmp_path / "out"))
    as_text = playback.set_column(2, "watch_seconds", pc.cast(playback.column("watch_seconds"), pa.string()))
    pq.write_table(as_text, tmp_path / "text.parquet")
    with pytest.raises(ColumnTypeError, match="column 'watch_seconds' has type string; it must be numeric"):
        run_stage1(_with_source(synth.spec, "playback", str(tmp_path / "text.parquet")), str(tmp_path / "out"))
    bad_dates = playback.set_column(1, "event_date", pc.cast(pc.cast(playback.column("event_date"), pa.int32()), pa.int64()))
    pq.write_table(bad_dates, tmp_path / "dates.parquet")
    with pytest.raises(ColumnTypeError, match="'event_date' has type int64; it must be a date"):
        run_stage1(_with_source(synth.spec, "playback", str(tmp_path / "dates.parquet")), str(tmp_path / "out"))


def test_stage1_refuses_trino(synth: Experiment, tmp_path: Path) -> None:
    from xpcompute.pipeline.engines.trino_engine import TrinoEngine

    with pytest.raises(InputError, match="stage 1 cannot run on trino"):
        run_stage1(synth.spec, str(tmp_path), engine=TrinoEngine(url="http://u@127.0.0.1:1/hive/xp"))
    with pytest.raises(InputError, match="unknown engine 'postgres'"):
        run_stage1(synth.spec, str(tmp_path), engine="postgres")
