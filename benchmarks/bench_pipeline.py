"""Pipeline benchmarks (issue 3): stage 1 and stage 2 on DuckDB and Spark, S3 through moto, compressed sizes.

    .venv/bin/python benchmarks/bench_pipeline.py --users 1000000
    .venv/bin/python benchmarks/bench_pipeline.py --users 10000000 --no-daily

One run generates the synthetic raw tables (``xpcompute.synthetic``), builds
the analysis table with DuckDB and with Spark (``local[*]``) from the same
local Parquet, then compresses one slice (country in US, CA; 10 metrics) with
DuckDB from local Parquet, with DuckDB from S3 (moto's server on 127.0.0.1),
and with Spark. Every figure has a peer from the same run: DuckDB against
Spark, S3 against local, compressed bytes against the raw slice's bytes.
Figures print as JSON and as a markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from common import machine, table, timed

from xpcompute.compression.io import to_parquet_bytes
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.stage1 import run_stage1
from xpcompute.pipeline.stage2 import compute_slice
from xpcompute.pipeline.tables import PublishedTable, publish_table
from xpcompute.storage import S3ObjectStore
from xpcompute.synthetic import SyntheticConfig, experiment_spec, generate, write_parquet

METRICS = [
    "streaming_hours", "is_streamer", "sessions", "long_sessions", "active_days",
    "rebuffer_rate", "playback_start_latency", "revenue", "cancelled", "retained",
]
SLICE = SliceFilter.either(country=["US", "CA"])


def copy_to_s3(published: PublishedTable, endpoint: str) -> PublishedTable:
    """Upload a published local table to moto's S3 and publish it there (same manifest protocol)."""
    store = S3ObjectStore("xp-bench", endpoint_url=endpoint)
    store.client.create_bucket(Bucket="xp-bench")
    src_fs = published.filesystem()

    def write(fs: Any, directory: str) -> Any:
        import pyarrow.fs as pafs

        for i, path in enumerate(published.paths()):
            pafs.copy_files(path, f"{directory}/part-{i}.parquet", source_filesystem=src_fs, destination_filesystem=fs)
        return published.schema

    return publish_table(store, "bench/analysis", write)


def raw_slice_bytes(published: PublishedTable, columns: list[str]) -> int:
    """Bytes of the slice's raw rows (the columns the compressed table summarises), as zstd Parquet."""
    data = published.read(columns=[*columns, "country"])
    rows = data.filter(SLICE.to_arrow_mask(data)).select(columns)
    sink = io.BytesIO()
    pq.write_table(rows, sink, compression="zstd")
    return len(sink.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--no-daily", action="store_true", help="skip the user-by-day table in stage 1")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-spark-stage1", action="store_true", help="Spark for stage 2 only (stage 1 on Spark is slow at 10M here)")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--reuse-raw", action="store_true", help="use WORKDIR/raw from an earlier run of the same --users")
    parser.add_argument("--duckdb-memory", default="8GB", help="DuckDB memory limit (spills to disk beyond it)")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="xp-bench-"))
    out: dict[str, Any] = {"users": args.users, "days": args.days, "machine": machine(), "seconds": {}}
    sec = out["seconds"]
    cfg = SyntheticConfig(users=args.users, days=args.days)

    os.environ.setdefault("XPCOMPUTE_DUCKDB_MEMORY_LIMIT", args.duckdb_memory)
    names = ("allocations", "users", "playback", "billing", "account")
    if args.reuse_raw and all((work / "raw" / f"{n}.parquet").exists() for n in names):
        uris = {n: str(work / "raw" / f"{n}.parquet") for n in names}
        out["raw_rows"] = {n: pq.read_metadata(uris[n]).num_rows for n in names}
    else:
        started = time.perf_counter()
        data = generate(cfg)
        sec["generate"] = time.perf_counter() - started
        out["raw_rows"] = {k: t.num_rows for k, t in data.tables().items()}
        started = time.perf_counter()
        uris = write_parquet(data, str(work / "raw"))
        sec["write_raw"] = time.perf_counter() - started
        del data
        print(f"generated {out['raw_rows']} in {sec['generate']:.1f}s", file=sys.stderr)
    spec = experiment_spec(uris, cfg, experiment_id="bench", daily=not args.no_daily)

    duck = run_stage1(spec, str(work / "duck"), engine="duckdb")
    sec["stage1_duckdb_analysis"] = duck.seconds["analysis"]
    sec["stage1_duckdb_user_day"] = duck.seconds.get("user_day")
    out["analysis_rows"] = duck.analysis.num_rows
    out["analysis_bytes"] = duck.analysis.num_bytes
    out["user_day_rows"] = duck.user_day.num_rows if duck.user_day else None
    print(f"stage 1 DuckDB {duck.seconds}", file=sys.stderr)

    sec["stage2_duckdb_local"], compressed = timed(
        lambda: compute_slice(duck.analysis, spec, SLICE, METRICS), repeat=5
    )
    out["compressed_rows"] = compressed.n_groups
    out["slice_users"] = compressed.layout.n_rows
    out["compressed_bytes"] = len(to_parquet_bytes(compressed))
    needed = list(dict.fromkeys(["cell", *(v for m in METRICS for v in (m, *spec.compressed_covariates(m)))]))
    out["raw_slice_bytes"] = raw_slice_bytes(duck.analysis, needed)
    print(f"stage 2 DuckDB local {sec['stage2_duckdb_local']:.3f}s", file=sys.stderr)

    if not args.no_s3:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            started = time.perf_counter()
            on_s3 = copy_to_s3(duck.analysis, f"http://{host}:{port}")
            sec["upload_analysis_to_s3"] = time.perf_counter() - started
            sec["stage2_duckdb_s3"], _ = timed(lambda: compute_slice(on_s3, spec, SLICE, METRICS), repeat=3)
        finally:
            server.stop()
        print(f"stage 2 DuckDB S3 {sec['stage2_duckdb_s3']:.3f}s", file=sys.stderr)

    if not args.no_spark:
        from xpcompute.pipeline.engines.spark_engine import SparkEngine, local_spark

        started = time.perf_counter()
        spark = local_spark(driver_memory="12g")
        sec["spark_session_start"] = time.perf_counter() - started
        engine = SparkEngine(spark)
        if not args.no_spark_stage1:
            on_spark = run_stage1(spec, str(work / "spark"), engine=engine)
            sec["stage1_spark_analysis"] = on_spark.seconds["analysis"]
            sec["stage1_spark_user_day"] = on_spark.seconds.get("user_day")
            print(f"stage 1 Spark {on_spark.seconds}", file=sys.stderr)
        compute_slice(duck.analysis, spec, SLICE, METRICS, engine=engine)  # warm-up: JIT, Python workers
        sec["stage2_spark_local"], _ = timed(lambda: compute_slice(duck.analysis, spec, SLICE, METRICS, engine=engine), repeat=3)
        engine.close()
        spark.stop()

    ratios = {
        "stage1_analysis_spark_over_duckdb": _ratio(sec.get("stage1_spark_analysis"), sec["stage1_duckdb_analysis"]),
        "stage1_user_day_spark_over_duckdb": _ratio(sec.get("stage1_spark_user_day"), sec.get("stage1_duckdb_user_day")),
        "stage2_spark_over_duckdb": _ratio(sec.get("stage2_spark_local"), sec["stage2_duckdb_local"]),
        "stage2_s3_over_local": _ratio(sec.get("stage2_duckdb_s3"), sec["stage2_duckdb_local"]),
        "raw_slice_over_compressed_bytes": out["raw_slice_bytes"] / out["compressed_bytes"],
        "slice_users_per_compressed_row": out["slice_users"] / out["compressed_rows"],
    }
    out["ratios"] = ratios
    print(json.dumps(out, indent=1, default=lambda x: round(x, 3) if isinstance(x, float) else str(x)))
    print(markdown(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        for sub in ("duck", "spark"):
            shutil.rmtree(work / sub, ignore_errors=True)
    return 0


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def markdown(out: dict[str, Any]) -> str:
    sec, ratios = out["seconds"], out["ratios"]

    def s(key: str) -> str:
        v = sec.get(key)
        return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"

    def r(key: str) -> str:
        v = ratios.get(key)
        return "-" if v is None else f"{v:.1f}x"

    rows = [
        ("stage 1: analysis table (1 row/user)", s("stage1_duckdb_analysis"), s("stage1_spark_analysis"), r("stage1_analysis_spark_over_duckdb")),
        ("stage 1: user-by-day table", s("stage1_duckdb_user_day"), s("stage1_spark_user_day"), r("stage1_user_day_spark_over_duckdb")),
        ("stage 2: 1 slice, 10 metrics, local Parquet", s("stage2_duckdb_local"), s("stage2_spark_local"), r("stage2_spark_over_duckdb")),
        ("stage 2: same, DuckDB through moto S3", s("stage2_duckdb_s3"), "-", r("stage2_s3_over_local") + " of local"),
    ]
    head = ("step", "DuckDB s", "Spark s", "Spark / DuckDB")
    size = (
        f"compressed slice {out['compressed_bytes']:,} B ({out['compressed_rows']} rows) vs raw slice "
        f"{out['raw_slice_bytes']:,} B ({out['slice_users']:,} rows): {ratios['raw_slice_over_compressed_bytes']:,.0f}x smaller"
    )
    return table(rows, head) + "\n\n" + size


if __name__ == "__main__":
    raise SystemExit(main())
