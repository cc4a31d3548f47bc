"""Stage 2: one generated query per slice, equal to ``compress_moments`` on the raw rows, on every engine."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
import sqlglot
from pipeline_helpers import Experiment, Moto

from xpcompute.compression import CompressedTable, compress_moments
from xpcompute.compression.io import read_compressed
from xpcompute.compression.transform import ColumnTransform, column_transforms
from xpcompute.errors import (
    ColumnTypeError,
    InputError,
    MissingColumnError,
    NotFoundError,
    UnsafeIdentifierError,
)
from xpcompute.pipeline.slices import Condition, SliceFilter
from xpcompute.pipeline.stage1 import Stage1Result
from xpcompute.pipeline.stage2 import (
    common_slices,
    compute_slice,
    live_slice,
    precompute_slices,
    read_slice,
    slice_sql,
)
from xpcompute.pipeline.tables import open_table, publish_table
from xpcompute.spec import FitSpec
from xpcompute.storage import LocalObjectStore

RTOL = 1e-9
METRICS_10 = [
    "streaming_hours", "is_streamer", "sessions", "long_sessions", "active_days",
    "rebuffer_rate", "playback_start_latency", "revenue", "cancelled", "retained",
]
CASES = {
    "everyone": (SliceFilter.everyone(), []),
    "conjunction": (SliceFilter.where(country="US", device="ios"), []),
    "disjunction_by_plan": (SliceFilter.either(country=["US", "CA"]), ["plan"]),
    "mixed_by_device_tenure": (
        SliceFilter(
            all_of=(Condition(column="plan", values=("basic",), negate=True),),
            any_of=(Condition(column="country", values=("US", "IN")), Condition(column="device", values=("tv",))),
        ),
        ["device", "tenure_bucket"],
    ),
}


def reference(analysis: pa.Table, synth: Experiment, s: SliceFilter, metrics: list[str], keys: list[str]) -> CompressedTable:
    """``compress_moments`` on the slice's rows, with the shift and scale of the whole table (as stage 2 uses)."""
    rows = analysis.filter(s.to_arrow_mask(analysis))
    plan = {m: synth.spec.compressed_covariates(m) for m in metrics}
    return compress_moments(rows, ["cell", *keys], plan, transforms=table_constants(analysis, plan))


def table_constants(table: pa.Table, plan: dict[str, tuple[str, ...]]) -> dict[str, ColumnTransform]:
    return column_transforms(table, [v for m, cov in plan.items() for v in (m, *cov)])


def assert_equal_compressed(got: CompressedTable, want: CompressedTable, rtol: float = RTOL) -> None:
    assert got.table.schema.equals(want.table.schema)
    assert got.layout.keys == want.layout.keys
    assert got.layout.metrics == want.layout.metrics
    assert got.layout.n_rows == want.layout.n_rows
    assert got.layout.dropped == want.layout.dropped
    assert got.layout.kind == want.layout.kind == "moments"
    assert got.layout.extra["row_level"] is False and got.layout.extra["weights"] is None
    for name in want.table.column_names:
        a, b = got.table.column(name), want.table.column(name)
        if pa.types.is_floating(b.type):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=0, err_msg=name)
        else:
            assert a.equals(b), name


@pytest.mark.parametrize("case", list(CASES))
def test_duckdb_equals_compress_moments_on_the_raw_rows(synth: Experiment, duck_stage1: Stage1Result, case: str) -> None:
    s, keys = CASES[case]
    metrics = list(synth.spec.metrics)
    got = compute_slice(duck_stage1.analysis.uri, synth.spec, s, metrics, keys)
    want = reference(duck_stage1.analysis.read(), synth, s, metrics, keys)
    assert_equal_compressed(got, want)
    assert got.layout.extra["slice"] == s.label() and got.layout.extra["engine"] == "duckdb"
    assert got.layout.extra["analysis_run"] == duck_stage1.analysis.run_id
    assert np.asarray(got.table.column("_n")).sum() == got.layout.n_rows  # no null keys in this data
    assert got.layout.dropped["playback_start_latency"] > 0  # users without playback have no latency
    assert got.compression_ratio > 20


def test_native_and_arrow_readers_agree(synth: Experiment, duck_stage1: Stage1Result) -> None:
    """Local Parquet goes to DuckDB's reader by default; the pyarrow-dataset path (used for S3) gives the same slice."""
    from xpcompute.pipeline.engines.duckdb_engine import DuckDBEngine

    s, keys = CASES["conjunction"]
    native = compute_slice(duck_stage1.analysis.uri, synth.spec, s, METRICS_10, keys, engine=DuckDBEngine())
    arrow = compute_slice(duck_stage1.analysis.uri, synth.spec, s, METRICS_10, keys, engine=DuckDBEngine(local_reader="arrow"))
    assert_equal_compressed(native, arrow, rtol=1e-12)


def test_layout_survives_parquet(synth: Experiment, duck_stage1: Stage1Result, tmp_path: Path) -> None:
    from xpcompute.compression.io import write_compressed

    got = compute_slice(duck_stage1.analysis.uri, synth.spec, SliceFilter.everyone(), ["rebuffer_rate", "streaming_hours"])
    write_compressed(got, str(tmp_path / "s.parquet"))
    back = read_compressed(str(tmp_path / "s.parquet"))
    assert back.layout == got.layout and back.table.equals(got.table)
    assert back.layout.metrics["rebuffer_rate"].covariates == ("rebuffer_rate__den", "rebuffer_rate__res")
    assert back.layout.metrics["streaming_hours"].covariates == ("pre_streaming_hours",)


@pytest.mark.spark
@pytest.mark.parametrize("case", ["conjunction", "mixed_by_device_tenure"])
def test_spark_equals_duckdb(synth: Experiment, duck_stage1: Stage1Result, spark: Any, case: str) -> None:
    from xpcompute.pipeline.engines.spark_engine import SparkEngine

    s, keys = CASES[case]
    duck = compute_slice(duck_stage1.analysis.uri, synth.spec, s, METRICS_10, keys)
    on_spark = compute_slice(duck_stage1.analysis.uri, synth.spec, s, METRICS_10, keys, engine=SparkEngine(spark))
    assert on_spark.layout.extra["engine"] == "spark"
    assert_equal_compressed(on_spark, duck, rtol=1e-12)
    for name in on_spark.table.column_names:  # keys and every count are exactly equal
        if name in on_spark.layout.keys or name == "_n" or name.endswith("__m_0") or name.endswith("__m_0_0"):
            assert on_spark.table.column(name).equals(duck.table.column(name)), name
    assert_equal_compressed(on_spark, reference(duck_stage1.analysis.read(), synth, s, METRICS_10, keys))


def test_duckdb_reads_the_table_from_s3(synth: Experiment, duck_stage1: Stage1Result, s3_stage1: Stage1Result) -> None:
    s, keys = CASES["disjunction_by_plan"]
    assert s3_stage1.analysis.uri.startswith("s3://")
    from_s3 = compute_slice(s3_stage1.analysis.uri, synth.spec, s, METRICS_10, keys)
    local = compute_slice(duck_stage1.analysis.uri, synth.spec, s, METRICS_10, keys)
    assert_equal_compressed(from_s3, local, rtol=1e-12)  # DuckDB sums floats in parallel: last bits may differ


def test_fits_on_the_compressed_slice_equal_fits_on_the_raw_rows(synth: Experiment, duck_stage1: Stage1Result) -> None:
    from xpcompute.models import fit_compressed, fit_table

    s = SliceFilter.either(country=["US", "GB"])
    specs = [
        FitSpec(metric="streaming_hours", treatment="cell", model="ttest"),
        FitSpec(metric="streaming_hours", treatment="cell", model="ols", covariates=("pre_streaming_hours",)),
        FitSpec(metric="sessions", treatment="cell", model="ols", covariates=("pre_sessions",)),
        FitSpec(metric="cancelled", treatment="cell", model="proportion"),
        FitSpec(metric="rebuffer_rate", treatment="cell", model="ratio", denominator="rebuffer_rate__den"),
        FitSpec(metric="revenue", treatment="cell", model="cate", segment="device", covariates=("pre_revenue",)),
    ]
    metrics = sorted({f.metric for f in specs})
    compressed = compute_slice(duck_stage1.analysis.uri, synth.spec, s, metrics, ["device"])
    analysis = duck_stage1.analysis.read()
    rows = analysis.filter(s.to_arrow_mask(analysis))
    for spec in specs:
        got = fit_compressed(compressed, spec)  # grouped by device too: the models sum over extra keys
        want = fit_table(rows, spec).records
        assert len(got) == len(want) > 0, spec.model
        for g, w in zip(got, want, strict=True):
            assert (g.cell, g.segment) == (w.cell, w.segment)
            for field in ("effect", "se", "p_value", "mean_cell", "mean_control", "n_cell"):
                np.testing.assert_allclose(getattr(g, field), getattr(w, field), rtol=RTOL, err_msg=f"{spec.model} {field}")


def test_null_keys_and_null_values_are_handled_like_compress_moments(synth: Experiment, tmp_path: Path) -> None:
    """Users with no dimension row (null country) and metrics with no value (null latency, a null-only group)."""
    n = 400
    rng = np.random.default_rng(3)
    country = rng.choice(np.array(["US", "CA", "GB"], dtype=object), n)
    country[rng.random(n) < 0.1] = None
    latency = rng.gamma(2.0, 400.0, n)
    latency_col = pa.array(np.where(rng.random(n) < 0.3, np.nan, latency), from_pandas=True)
    cells = np.array(synth.spec.cells, dtype=object)[rng.integers(0, 3, n)]
    gb_control = (country == "GB") & (cells == "control")
    table = pa.table({
        "user_id": np.arange(n),
        "cell": pa.array(cells.tolist()),
        "country": pa.array(country.tolist(), pa.string()),
        "sessions": pa.array(np.where(gb_control, None, rng.poisson(3.0, n)).tolist(), pa.int64()),
        "pre_sessions": rng.poisson(2.0, n).astype(float),
        "playback_start_latency": pc.if_else(pa.array(gb_control), None, latency_col),
    })
    uri = _publish(tmp_path, table)
    metrics = ["sessions", "playback_start_latency"]
    got = compute_slice(uri, synth.spec, SliceFilter.everyone(), metrics, ["country"])
    plan = {m: synth.spec.compressed_covariates(m) for m in metrics}
    want = compress_moments(table, ["cell", "country"], plan, transforms=table_constants(table, plan))
    assert_equal_compressed(got, want)
    assert ("control", "GB") not in list(zip(got.table.column("cell").to_pylist(), got.table.column("country").to_pylist(), strict=True))
    assert got.layout.dropped["sessions"] > 0 and got.layout.n_rows == n


def test_all_rows_of_the_table_are_accounted_for(synth: Experiment, duck_stage1: Stage1Result) -> None:
    got = compute_slice(duck_stage1.analysis.uri, synth.spec, SliceFilter.everyone(), ["sessions"], ["country"])
    assert got.layout.n_rows == duck_stage1.analysis.num_rows
    assert float(pc.sum(got.table.column("_n")).as_py()) == duck_stage1.analysis.num_rows


# ----------------------------------------------------------------------------- errors


def test_empty_slice_is_a_clear_error(synth: Experiment, duck_stage1: Stage1Result) -> None:
    impossible = SliceFilter(all_of=(Condition(column="country", values=("US",)), Condition(column="country", values=("CA",))))
    with pytest.raises(InputError, match="matches no users"):
        compute_slice(duck_stage1.analysis.uri, synth.spec, impossible, ["sessions"])


@pytest.mark.parametrize(
    "metrics,error,message",
    [
        (["watch_time"], InputError, "unknown metric 'watch_time' .*no such metric.*use one of"),
        (["sessions; DROP TABLE analysis"], UnsafeIdentifierError, "not a metric of experiment"),
        (["cell"], InputError, "unknown metric 'cell'"),
        ([], InputError, "name at least one metric"),
        (["sessions", "sessions"], InputError, "twice"),
    ],
)
def test_bad_metric_names(synth: Experiment, duck_stage1: Stage1Result, metrics: list[str], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        compute_slice(duck_stage1.analysis.uri, synth.spec, SliceFilter.everyone(), metrics)


def test_catalog_metric_outside_the_experiment(synth: Experiment, duck_stage1: Stage1Result) -> None:
    spec = synth.spec.model_copy(update={"metrics": ("sessions",)})
    with pytest.raises(InputError, match="in the catalog but not in this experiment"):
        compute_slice(duck_stage1.analysis.uri, spec, SliceFilter.everyone(), ["revenue"])


@pytest.mark.parametrize("key", ["email", "country, 1", "cell; --", "streaming_hours"])
def test_bad_group_keys(synth: Experiment, duck_stage1: Stage1Result, key: str) -> None:
    with pytest.raises(UnsafeIdentifierError, match="not a declared dimension"):
        compute_slice(duck_stage1.analysis.uri, synth.spec, SliceFilter.everyone(), ["sessions"], [key])


def test_missing_analysis_table(synth: Experiment, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no published table .* run stage 1 first"):
        compute_slice(str(tmp_path / "nothing" / "analysis"), synth.spec, SliceFilter.everyone(), ["sessions"])


def _publish(tmp_path: Path, table: pa.Table) -> str:
    store = LocalObjectStore(tmp_path)

    def write(fs: pafs.FileSystem, directory: str) -> pa.Schema:
        ds.write_dataset(table, directory, format="parquet", filesystem=fs)
        return table.schema

    return publish_table(store, "exp/analysis", write).uri


def test_type_mismatch_in_the_analysis_table(synth: Experiment, duck_stage1: Stage1Result, tmp_path: Path) -> None:
    analysis = duck_stage1.analysis.read()
    idx = analysis.column_names.index("sessions")
    broken = analysis.set_column(idx, "sessions", pc.cast(analysis.column("sessions"), pa.string()))
    uri = _publish(tmp_path, broken)
    with pytest.raises(ColumnTypeError, match="metric column 'sessions' has type string"):
        compute_slice(uri, synth.spec, SliceFilter.everyone(), ["sessions"])
    idx = analysis.column_names.index("pre_sessions")
    broken = analysis.set_column(idx, "pre_sessions", pc.cast(analysis.column("pre_sessions"), pa.string()))
    uri = _publish(tmp_path / "b", broken)
    with pytest.raises(ColumnTypeError, match="covariate of sessions column 'pre_sessions'"):
        compute_slice(uri, synth.spec, SliceFilter.everyone(), ["sessions"])
    with pytest.raises(MissingColumnError, match="re-run stage 1"):
        compute_slice(_publish(tmp_path / "c", analysis.drop_columns(["revenue"])), synth.spec, SliceFilter.everyone(), ["revenue"])
    with pytest.raises(ColumnTypeError, match="string dimension"):
        compute_slice(duck_stage1.analysis.uri, synth.spec, SliceFilter.where(country=1), ["sessions"])


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_injection_attempts_are_refused_and_change_nothing(synth: Experiment, duck_stage1: Stage1Result) -> None:
    table_dir = Path(duck_stage1.analysis.uri)
    before = _fingerprint(table_dir.parent)
    uri = duck_stage1.analysis.uri
    attempts: list[tuple[SliceFilter, list[str], list[str]]] = [
        (SliceFilter.where(**{"country = 'US' OR 1=1; DROP TABLE analysis; --": "US"}), ["sessions"], []),
        (SliceFilter.where(country="US'; DROP TABLE xp_analysis; --"), ["sessions"], []),
        (SliceFilter.where(country="US"), ["sessions FROM analysis; DROP TABLE analysis; --"], []),
        (SliceFilter.where(country="US"), ["sessions"], ["country) UNION SELECT * FROM secrets --"]),
    ]
    for s, metrics, keys in attempts:
        with pytest.raises(InputError):  # UnsafeIdentifierError is an InputError
            compute_slice(uri, synth.spec, s, metrics, keys)
    assert _fingerprint(table_dir.parent) == before
    assert open_table(uri).read().num_rows == duck_stage1.analysis.num_rows


# ----------------------------------------------------------------------------- Trino SQL, executed by DuckDB


class DuckDBAsTrino:
    """A DB-API connection that runs Trino SQL by transpiling it to DuckDB (no Trino server runs here)."""

    def __init__(self, analysis: pa.Table) -> None:
        self.con = duckdb.connect()
        self.con.register("arrow_analysis", analysis)
        self.con.execute("ATTACH ':memory:' AS hive")
        self.con.execute("CREATE SCHEMA hive.xp")
        self.con.execute("CREATE TABLE hive.xp.analysis AS SELECT * FROM arrow_analysis")
        self.queries: list[str] = []

    def cursor(self) -> DuckDBAsTrino:
        return self

    def execute(self, sql: str) -> None:
        self.queries.append(sql)
        self.result = self.con.sql(sqlglot.transpile(sql, read="trino", write="duckdb")[0])
        self.description = [(name,) for name in self.result.columns]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.result.fetchall())

    def close(self) -> None:
        return None


def test_trino_sql_computes_the_same_slice(synth: Experiment, duck_stage1: Stage1Result) -> None:
    from xpcompute.pipeline.engines.trino_engine import TrinoEngine

    fake = DuckDBAsTrino(duck_stage1.analysis.read())
    engine = TrinoEngine(tables={"analysis": "hive.xp.analysis"}, connection=fake)
    s, keys = CASES["mixed_by_device_tenure"]
    got = compute_slice(duck_stage1.analysis.uri, synth.spec, s, METRICS_10, keys, engine=engine)
    assert fake.queries[0].startswith('WITH "src" AS (SELECT "cell", "device", "tenure_bucket"')
    assert '"hive"."xp"."analysis"' in fake.queries[0]
    assert got.layout.extra["engine"] == "trino"
    assert_equal_compressed(got, reference(duck_stage1.analysis.read(), synth, s, METRICS_10, keys))


def test_trino_engine_needs_a_table_mapping(synth: Experiment, duck_stage1: Stage1Result) -> None:
    from xpcompute.pipeline.engines.trino_engine import TrinoEngine

    with pytest.raises(InputError, match="Trino reads catalog tables, not files"):
        compute_slice(duck_stage1.analysis.uri, synth.spec, SliceFilter.everyone(), ["sessions"],
                      engine=TrinoEngine(url="http://u@127.0.0.1:1/hive/xp"))
    with pytest.raises(InputError, match="plain identifiers"):
        TrinoEngine(url="http://u@127.0.0.1:1", tables={"analysis": "hive.xp.t; DROP TABLE x"})


# ----------------------------------------------------------------------------- pre-compute and live compute


def test_precompute_then_live_slices(synth: Experiment, duck_stage1: Stage1Result) -> None:
    spec = synth.spec.model_copy(update={"precompute": (SliceFilter.everyone(), SliceFilter.where(country="US"))})
    stored = precompute_slices(duck_stage1.analysis.uri, spec, metrics=METRICS_10)
    assert [s.slice.label() for s in stored] == ["all users", "country=US"]
    store = stored[0].store
    assert store.uri_for(stored[0].key).startswith(str(Path(duck_stage1.analysis.uri).parent / "slices"))
    for item in stored:
        assert store.exists(item.key) and f"slices/{duck_stage1.analysis.run_id}/" in item.key
        assert read_slice(store, item.key).table.equals(item.compressed.table)
    # the same slice again, conditions in another order: served from the store
    again = live_slice(duck_stage1.analysis.uri, spec, SliceFilter(name="US", all_of=(Condition(column="country", values=("US",)),)),
                       metrics=list(reversed(METRICS_10)))
    assert again.cached and again.key == stored[1].key
    # a new slice is computed on demand, stored once
    fresh = live_slice(duck_stage1.analysis.uri, spec, SliceFilter.where(device="web"), metrics=METRICS_10, keys=["plan"])
    assert not fresh.cached and store.exists(fresh.key)
    assert_equal_compressed(fresh.compressed, read_slice(store, fresh.key), rtol=0)
    assert live_slice(duck_stage1.analysis.uri, spec, SliceFilter.where(device="web"), METRICS_10, ["plan"]).cached


def test_common_slices(synth: Experiment) -> None:
    slices = common_slices(synth.spec, ["device"])
    assert [s.label() for s in slices] == ["all users", "device=android", "device=ios", "device=tv", "device=web"]
    with pytest.raises(UnsafeIdentifierError):
        common_slices(synth.spec, ["email"])


def test_slice_sql_is_text_without_data(synth: Experiment) -> None:
    sql = slice_sql(synth.spec, SliceFilter.where(country="US"), ["sessions"], dialect="spark", pretty=False)
    masked = "CASE WHEN NOT `sessions` IS NULL AND NOT `pre_sessions` IS NULL THEN CAST(`sessions` AS DOUBLE) END"
    assert sql.startswith(f"WITH `src` AS (SELECT `cell`, {masked} AS `_xp_0_0`")
    assert "WHERE `country` = 'US'" in sql and "GROUP BY `cell`" in sql
    assert "SUM(`_xp_0_0` * `_xp_0_0` * `_xp_0_1` * `_xp_0_1`)" in sql


def test_object_store_down_mid_query_is_a_storage_error(synth: Experiment, duck_stage1: Stage1Result, moto_s3: Moto) -> None:
    """The table's manifest was read, then S3 went away: the query fails with StorageError, not a data error."""
    import logging

    from moto.server import ThreadedMotoServer

    from xpcompute.errors import StorageError
    from xpcompute.storage import S3ObjectStore

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    store = S3ObjectStore("xp-down", endpoint_url=f"http://{host}:{port}")
    try:
        store.client.create_bucket(Bucket="xp-down")
        analysis = duck_stage1.analysis.read()

        def write(fs: pafs.FileSystem, directory: str) -> pa.Schema:
            ds.write_dataset(analysis, directory, format="parquet", filesystem=fs)
            return analysis.schema

        published = publish_table(store, "exp/analysis", write)
    finally:
        server.stop()
    # the first read is the table's shift and scale (pipeline.stage2.table_transforms), else DuckDB's scan
    with pytest.raises(StorageError, match=r"(reading s3://xp-down/exp/analysis|DuckDB reading its inputs) failed"):
        compute_slice(published, synth.spec, SliceFilter.everyone(), ["sessions"])


@pytest.mark.parametrize("metric,keys", [("sessions", []), ("playback_start_latency", ["device"]), ("active_days", ["plan"])])
def test_distribution_slice_equals_compress_values(synth: Experiment, duck_stage1: Stage1Result, metric: str, keys: list[str]) -> None:
    from xpcompute.compression.distribution import compress_values
    from xpcompute.pipeline.stage2 import compute_distribution

    s = SliceFilter.either(country=["US", "BR"])
    got = compute_distribution(duck_stage1.analysis.uri, synth.spec, s, metric, keys)
    analysis = duck_stage1.analysis.read()
    want = compress_values(analysis.filter(s.to_arrow_mask(analysis)), metric, ["cell", *keys])
    assert got.layout.kind == want.layout.kind == "distribution"
    assert got.layout.keys == want.layout.keys and got.layout.metrics == want.layout.metrics
    assert (got.layout.n_rows, got.layout.dropped) == (want.layout.n_rows, want.layout.dropped)
    for k, v in want.layout.extra.items():
        assert got.layout.extra[k] == v, k
    assert got.table.schema.equals(want.table.schema)
    for name in want.table.column_names:
        if name in want.layout.keys:
            assert got.table.column(name).equals(want.table.column(name)), name
        else:
            np.testing.assert_allclose(np.asarray(got.table.column(name)), np.asarray(want.table.column(name)), rtol=RTOL)


def test_rank_test_on_the_distribution_slice_equals_the_raw_rows(synth: Experiment, duck_stage1: Stage1Result) -> None:
    from xpcompute.models import fit_compressed, fit_table
    from xpcompute.pipeline.stage2 import compute_distribution

    s = SliceFilter.where(device="tv")
    spec = FitSpec(metric="sessions", treatment="cell", model="mannwhitney")
    got = fit_compressed(compute_distribution(duck_stage1.analysis.uri, synth.spec, s, "sessions"), spec)
    analysis = duck_stage1.analysis.read()
    want = fit_table(analysis.filter(s.to_arrow_mask(analysis)), spec).records
    assert len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        for field in ("effect", "se", "p_value", "statistic"):
            np.testing.assert_allclose(getattr(g, field), getattr(w, field), rtol=RTOL, err_msg=field)


def test_sql_arrow_and_cube_routes_compress_a_slice_with_the_same_table_constants(
    synth: Experiment, duck_stage1: Stage1Result
) -> None:
    """Every route shifts and scales by constants of the whole table (never the slice's), so they agree."""
    from dataclasses import replace

    from xpcompute.coordinator import slicing

    published = duck_stage1.analysis
    metrics = ["streaming_hours", "sessions", "rebuffer_rate"]
    specs = tuple(
        FitSpec(metric=m, treatment="cell", covariates=synth.spec.compressed_covariates(m), model="ols")
        if m != "rebuffer_rate"
        else FitSpec(metric=m, treatment="cell", model="ratio", denominator=synth.spec.compressed_covariates(m)[0])
        for m in metrics
    )
    s = SliceFilter.where(country="US")
    task = slicing.SliceTask(
        experiment_id=synth.spec.id, table_prefix=published.key, slice=s, specs=specs, treatment="cell",
        experiment=synth.spec, engine="arrow",
    )
    arrow = slicing.compute_arrow(task, published.store)
    sql = slicing.compute_pipeline(replace(task, engine="duckdb"), published.store)
    group_keys, plan = slicing.compression_plan(specs, published.schema)
    table = published.read()
    cube = compress_moments(table, [*group_keys, "country", "device"], plan, transforms=slicing.table_transforms(published, plan))
    from_cube = slicing.reaggregate(cube, s, group_keys)
    whole = table_constants(table, {m: tuple(c) for m, c in plan.items()})
    for got in (arrow, sql, from_cube):
        for m in metrics:
            layout = got.layout.metrics[m]
            assert layout.transforms == tuple(whole[v] for v in (m, *layout.covariates)), m
            assert not all(t.is_identity for t in layout.transforms)
    for name in arrow.table.column_names:
        if name in group_keys:
            assert arrow.table.column(name).equals(sql.table.column(name)) and arrow.table.column(name).equals(from_cube.table.column(name))
            continue
        want = np.asarray(arrow.table.column(name))
        np.testing.assert_allclose(np.asarray(sql.table.column(name)), want, rtol=1e-12, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(np.asarray(from_cube.table.column(name)), want, rtol=1e-12, atol=1e-9, err_msg=name)
