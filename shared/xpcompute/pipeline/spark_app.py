"""Stage 1 as a Spark application: the program ``spark-submit`` runs as the driver (see ``spark_submit.py``).

Why a separate program: on a cluster, stage 1 must run in a driver that the
cluster manager knows (its executors, its application id, its logs), not in a
session that a web process or a notebook happens to hold. This file is both
the script ``spark-submit`` is given and ``python -m xpcompute.pipeline.spark_app``
(which, without ``spark-submit``, builds a session on ``--master``).

It loads the experiment spec (JSON, or YAML for a local file) from a path or an
``s3://`` key, runs ``run_stage1(spec, root, engine="spark")`` on the session
the driver already has (``local_spark`` reuses the active session, so the
submitter's master and ``--conf`` settings hold), and always writes a small JSON
status to ``--status`` (a path or an ``s3://`` key) so the submitter learns the
outcome without parsing logs:

    {"format": "xpcompute.stage1-status/1", "ok": true, "experiment": ..., "application_id": ...,
     "master": ..., "tables": {"analysis": {"uri", "run", "rows"}, ...}, "seconds": {..., "total": ...}}
    {"format": ..., "ok": false, "error": {"type": "MissingColumnError", "message": ..., "code": ...}, ...}

It also prints one ``XPCOMPUTE_STAGE1 application_id=...`` line as soon as the
session exists, because local masters log no application id of their own.
Exit status: 0 when the tables are published, 1 when stage 1 failed (status
written), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

# Run as a file (as spark-submit does), Python puts this folder first on sys.path, where stage1.py, tables.py
# and the rest would shadow top-level modules of the same names (PyTables is ``tables``); imports are absolute.
if __name__ == "__main__" and sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

STATUS_FORMAT = "xpcompute.stage1-status/1"
MARKER = "XPCOMPUTE_STAGE1"


def load_spec(location: str) -> Any:
    """The ``ExperimentSpec`` at a local path (JSON, or YAML by suffix) or an ``s3://bucket/key`` (JSON)."""
    from xpcompute.errors import InputError
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.storage.objects import split_uri

    if location.startswith("s3://"):
        store, key = split_uri(location)
        text = store.get_bytes(key).decode()
    else:
        path = Path(location)
        if path.suffix in (".yaml", ".yml"):
            return ExperimentSpec.from_yaml(path)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise InputError(f"experiment spec {location} does not exist; pass --spec a JSON file or s3:// key") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"experiment spec {location} is not valid JSON ({exc}); write it with model_dump_json()") from exc
    if not isinstance(raw, dict):
        raise InputError(f"experiment spec {location} must be a JSON object with id, cells, control, window, ...")
    return ExperimentSpec.parse(raw, origin=location)


def write_status(location: str, status: dict[str, Any]) -> None:
    """Write the status JSON whole: a local file appears atomically (``os.replace``), an S3 object in one put."""
    data = json.dumps(status, indent=1, sort_keys=True, default=str).encode()
    if location.startswith("s3://"):
        from xpcompute.storage.objects import split_uri

        store, key = split_uri(location)
        store.put_bytes(key, data)
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".status-", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _session(master: str | None) -> Any:
    """The driver's session: the one ``spark-submit`` configured, or a local one when run with plain ``python``."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # set by spark-submit's PythonRunner: master and conf are its own
        from pyspark.sql import SparkSession

        session = SparkSession.builder.getOrCreate()
    else:
        from xpcompute.pipeline.engines.spark_engine import local_spark

        session = local_spark(master)
    # Stage 1's date windows are calendar days; a driver in another time zone would shift timestamp sources.
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


def run(spec_location: str, output_root: str, master: str | None = None, daily: bool | None = None) -> dict[str, Any]:
    """Run stage 1 in this driver and return the status (``ok`` false with the error rather than raising)."""
    started = time.perf_counter()
    status: dict[str, Any] = {"format": STATUS_FORMAT, "ok": False, "spec": spec_location, "output_root": output_root}
    session = None
    try:
        spec = load_spec(spec_location)  # before the session: a bad spec fails in a second, not after a JVM start
        status["experiment"] = spec.id
        session = _session(master)
        context = session.sparkContext
        status["application_id"] = context.applicationId
        status["master"] = context.master
        print(f"{MARKER} application_id={context.applicationId} master={context.master}", flush=True)

        from xpcompute.pipeline.stage1 import run_stage1

        result = run_stage1(spec, output_root, engine="spark", daily=daily)
        tables = {"analysis": result.analysis}
        if result.user_day is not None:
            tables["user_day"] = result.user_day
        status["tables"] = {k: {"uri": t.uri, "run": t.run_id, "rows": t.num_rows} for k, t in tables.items()}
        status["seconds"] = {k: round(v, 3) for k, v in result.seconds.items()}
        status["ok"] = True
    except Exception as exc:
        traceback.print_exc()
        status["error"] = {"type": type(exc).__name__, "message": str(exc), "code": getattr(exc, "code", None)}
    status.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
    if session is not None:
        session.stop()  # frees the cluster's executors now rather than at interpreter exit
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xpcompute.pipeline.spark_app", description="Run stage 1 of one experiment as a Spark application."
    )
    parser.add_argument("--spec", required=True, help="experiment spec: a JSON file, a YAML file, or s3://bucket/key (JSON)")
    parser.add_argument("--output-root", required=True, help="where tables are published: a folder or s3://bucket/prefix")
    parser.add_argument("--status", required=True, help="where the JSON status goes: a file path or s3://bucket/key")
    parser.add_argument("--master", default=None, help="without spark-submit only: the master (default $XPCOMPUTE_SPARK_MASTER)")
    parser.add_argument("--no-daily", action="store_true", help="skip the user-by-day table")
    args = parser.parse_args(argv)
    status = run(args.spec, args.output_root, args.master, daily=False if args.no_daily else None)
    write_status(args.status, status)
    print(f"{MARKER} ok={str(status['ok']).lower()} status={args.status}", flush=True)
    return 0 if status["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
