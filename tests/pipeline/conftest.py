"""Fixtures for the pipeline tests: one synthetic experiment, its stage-1 tables, a Spark session, a moto S3 server.

Everything expensive is session-scoped: the raw data (20k users) is drawn
once, stage 1 runs once per engine, and one SparkSession (``local[2]``,
loopback only, no UI) serves every Spark test.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

try:  # until the C++ module is built, the NumPy reference (the same specification) stands in
    import xpcompute._core  # type: ignore[import-not-found]  # noqa: F401
except ImportError:
    os.environ.setdefault("XPCOMPUTE_NATIVE", "reference")

from pipeline_helpers import Experiment, Moto

from xpcompute.pipeline.stage1 import Stage1Result, run_stage1
from xpcompute.synthetic import SyntheticConfig, experiment_spec, generate, write_parquet

USERS = 20_000


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    root = tmp_path_factory.mktemp("xp")
    config = SyntheticConfig(users=USERS, seed=7)
    data = generate(config)
    uris = write_parquet(data, str(root / "raw"))
    return Experiment(data, uris, experiment_spec(uris, config), root)


@pytest.fixture(scope="session")
def duck_stage1(synth: Experiment) -> Stage1Result:
    return run_stage1(synth.spec, str(synth.root / "duck"), engine="duckdb")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from xpcompute.pipeline.engines.spark_engine import local_spark

    session = local_spark("local[2]", driver_memory="2g", shuffle_partitions=4)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_stage1(synth: Experiment, spark: Any) -> Stage1Result:
    from xpcompute.pipeline.engines.spark_engine import SparkEngine

    engine = SparkEngine(spark)
    try:
        return run_stage1(synth.spec, str(synth.root / "spark"), engine=engine)
    finally:
        engine.close()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[Moto]:
    """moto's S3 over real HTTP on 127.0.0.1, with dummy credentials and ``XPCOMPUTE_S3_ENDPOINT`` set."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "XPCOMPUTE_S3_ENDPOINT")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["XPCOMPUTE_S3_ENDPOINT"] = endpoint
    moto = Moto(endpoint, "xp-test")
    moto.client().create_bucket(Bucket=moto.bucket)
    yield moto
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_stage1(synth: Experiment, moto_s3: Moto) -> Stage1Result:
    """The analysis table published to S3 (moto) by DuckDB from the local raw files."""
    return run_stage1(synth.spec, f"s3://{moto_s3.bucket}/published", engine="duckdb", daily=False)
