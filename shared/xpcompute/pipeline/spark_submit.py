"""Submit stage 1 to a Spark master with ``spark-submit`` and follow the application to completion.

Why: on a cluster, stage 1 belongs in a Spark application of its own (its own
driver, executors, application id and logs) rather than in a session held by
the service process. ``submit_stage1`` writes the spec to a scratch folder,
runs ``spark-submit --master M --deploy-mode client pipeline/spark_app.py``,
reads the application's log line by line as it is written (keeping a tail and
picking out the application id), waits for it to exit, and then trusts the
status JSON the application wrote, not the log, for the outcome.

Nothing is shipped with ``--py-files``: in client mode the driver is this
machine's interpreter (``spark.pyspark.python``), where ``xpcompute`` is
installed, and stage 1's executors run Spark SQL only, never Python.

``run_stage1_configured`` picks DuckDB, an in-process Spark session or
``spark-submit`` from ``XPCOMPUTE_STAGE1_ENGINE`` (see ``config.py``).
"""

from __future__ import annotations

import collections
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcompute import errors
from xpcompute.config import Settings
from xpcompute.errors import JobFailedError, XPError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.tables import PublishedTable, open_table

log = logging.getLogger(__name__)

APP_FILE = Path(__file__).with_name("spark_app.py")

DEFAULT_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
"""Loopback-only networking and no UI, as for the in-process session; ``conf`` entries override these."""

_APP_ID = re.compile(
    r"XPCOMPUTE_STAGE1 application_id=(\S+)"  # spark_app.py's own line (local masters log no id)
    r"|Connected to Spark cluster with app ID (\S+)"  # standalone
    r"|Submitted application (application_\d+_\d+)"  # YARN
)


@dataclass(frozen=True)
class Stage1Submission:
    """How one submitted stage-1 application ended; ``status`` is the JSON that ``spark_app.py`` wrote."""

    application_id: str | None
    exit_code: int
    status: dict[str, Any] | None
    log_tail: str
    seconds: float
    command: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and bool(self.status and self.status.get("ok"))

    def table_uri(self, kind: str = "analysis") -> str:
        """URI of a published table (``analysis`` or ``user_day``), as the application reported it."""
        tables = (self.status or {}).get("tables") or {}
        if kind not in tables:
            raise JobFailedError(
                f"Spark application {self.application_id} reported no {kind!r} table "
                f"(it published: {', '.join(tables) or 'nothing'})"
            )
        return str(tables[kind]["uri"])


def find_spark_submit(spark_home: str | None = None) -> str:
    """``spark-submit``: under ``spark_home``, else ``$SPARK_HOME``, else the one bundled in the pyspark package."""
    home = spark_home or os.environ.get("SPARK_HOME")
    if home:
        candidate = Path(home) / "bin" / "spark-submit"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        origin = "spark_home" if spark_home else "$SPARK_HOME"
        raise JobFailedError(f"{origin} is {home}, which has no executable bin/spark-submit; point it at a Spark install")
    spec = importlib.util.find_spec("pyspark")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "spark-submit"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise JobFailedError(
        "spark-submit not found: install pyspark in this environment (pip install 'xpcompute[spark]') "
        "or set SPARK_HOME to a Spark installation"
    )


def spark_submit_command(
    spec_location: str,
    output_root: str,
    status_location: str,
    master: str,
    *,
    spark_home: str | None = None,
    conf: Mapping[str, str] | None = None,
    python: str | None = None,
    name: str = "xpcompute-stage1",
    daily: bool | None = None,
) -> list[str]:
    """The ``spark-submit`` command line (client deploy mode, the driver and workers on ``python``)."""
    python = python or sys.executable
    settings = {**DEFAULT_CONF, "spark.pyspark.python": python, "spark.pyspark.driver.python": python, **(conf or {})}
    cmd = [find_spark_submit(spark_home), "--master", master, "--deploy-mode", "client", "--name", name]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(APP_FILE), "--spec", spec_location, "--output-root", output_root, "--status", status_location]
    if daily is False:
        cmd.append("--no-daily")
    return cmd


def submit_stage1(
    experiment: ExperimentSpec | str,
    output_root: str,
    master: str,
    *,
    spark_home: str | None = None,
    conf: Mapping[str, str] | None = None,
    timeout_s: float = 3600.0,
    daily: bool | None = None,
    python: str | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 60,
) -> Stage1Submission:
    """Run stage 1 as a Spark application on ``master`` and wait for it; raise if it did not publish.

    ``experiment`` is a spec, or the location of one (a JSON/YAML path or an
    ``s3://`` key the driver can read). ``on_line`` sees every log line as it
    arrives (default: this module's logger at DEBUG). A failure the application
    classified (a missing column is ``MissingColumnError``) is raised as that same
    type, chained from a ``JobFailedError`` with the log tail; anything else
    (spark-submit missing, master unreachable, a crash, the timeout) raises
    ``JobFailedError`` with the reason and the log tail.
    """
    started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="xp-stage1-submit-")
    try:
        if isinstance(experiment, ExperimentSpec):
            spec_location = os.path.join(scratch, "spec.json")
            Path(spec_location).write_text(experiment.model_dump_json())
            name = f"xpcompute-stage1-{experiment.id}"
        else:
            spec_location, name = experiment, "xpcompute-stage1"
        status_path = os.path.join(scratch, "status.json")
        cmd = spark_submit_command(
            spec_location, output_root, status_path, master,
            spark_home=spark_home, conf=conf, python=python, name=name, daily=daily,
        )
        env = dict(os.environ)
        env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = python or sys.executable
        if {**DEFAULT_CONF, **(conf or {})}.get("spark.driver.host") == "127.0.0.1":
            env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the driver's block manager on loopback too
        exit_code, app_id, tail = _follow(cmd, env, timeout_s, on_line, tail_lines, master)
        status = _read_status(status_path)
        if status and status.get("application_id"):
            app_id = str(status["application_id"])
        submission = Stage1Submission(
            application_id=app_id,
            exit_code=exit_code,
            status=status,
            log_tail="\n".join(tail),
            seconds=time.perf_counter() - started,
            command=tuple(cmd),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not submission.ok:
        raise _failure(submission, master)
    log.info("stage 1 application %s finished in %.1f s", submission.application_id, submission.seconds)
    return submission


def _follow(
    cmd: list[str],
    env: dict[str, str],
    timeout_s: float,
    on_line: Callable[[str], None] | None,
    tail_lines: int,
    master: str,
) -> tuple[int, str | None, list[str]]:
    """Start ``cmd`` in its own process group, read its log as it comes, wait; returns (exit code, app id, tail)."""
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    found: list[str] = []
    emit = on_line or (lambda line: log.debug("spark-submit: %s", line))
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, text=True, errors="replace", bufsize=1, start_new_session=True,
        )
    except OSError as exc:
        raise JobFailedError(f"could not start spark-submit ({cmd[0]}): {exc}; check the Spark installation") from exc

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if not found:
                match = _APP_ID.search(line)
                if match:
                    found.append(next(g for g in match.groups() if g))
            try:
                emit(line)
            except Exception:  # a failing callback must not stop the draining, or spark-submit blocks on a full pipe
                log.exception("on_line failed on a spark-submit log line")

    reader = threading.Thread(target=read, name="spark-submit-log", daemon=True)
    reader.start()
    try:
        exit_code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(proc)
        reader.join(timeout=5)
        app = found[0] if found else "(no application id seen)"
        raise JobFailedError(
            f"Spark application {app} on {master} did not finish within {timeout_s:g} s and was stopped; "
            f"raise timeout_s, or check that the master has free cores and memory. Last log lines:\n"
            + "\n".join(tail)
        ) from None
    except BaseException:
        _stop(proc)
        raise
    reader.join(timeout=30)
    return exit_code, (found[0] if found else None), list(tail)


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop spark-submit, its JVM and its Python driver (one process group): TERM, then KILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_status(path: str) -> dict[str, Any] | None:
    try:
        raw = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return raw if isinstance(raw, dict) else None


def _failure(sub: Stage1Submission, master: str) -> XPError:
    """The error to raise for a failed submission: the application's own error type when it reported one."""
    app = sub.application_id or "(no application id seen)"
    error = (sub.status or {}).get("error")
    if not isinstance(error, dict):
        return JobFailedError(
            f"spark-submit on {master} exited with code {sub.exit_code} before application {app} reported "
            f"an outcome; check that Java 17 is installed and the master is reachable. Last log lines:\n{sub.log_tail}"
        )
    kind, message = str(error.get("type")), str(error.get("message"))
    detail = JobFailedError(
        f"stage 1 failed in Spark application {app} on {master} (exit code {sub.exit_code}): {kind}: {message}\n"
        f"Last log lines:\n{sub.log_tail}"
    )
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, XPError) and cls is not XPError:
        typed = cls(f"{message} (stage 1 in Spark application {app})")
        typed.__cause__ = detail
        return typed
    return detail


def run_stage1_configured(
    experiment: ExperimentSpec, output_root: str, settings: Settings | None = None
) -> PublishedTable:
    """Stage 1 on the engine ``XPCOMPUTE_STAGE1_ENGINE`` names; returns the published analysis table.

    One entry point so callers switch between DuckDB, in-process Spark,
    ``spark-submit`` and EMR Serverless by configuration, with the same return
    type and errors.
    """
    from xpcompute.pipeline.stage1 import run_stage1

    settings = settings or Settings.from_env()
    if settings.stage1_engine == "spark-submit":
        submission = submit_stage1(experiment, output_root, settings.spark_master)
        return open_table(submission.table_uri("analysis"))
    if settings.stage1_engine == "emr-serverless":
        # boto3 only on this route (emr_serverless is the pipeline's one boto3 user)
        from xpcompute.pipeline.emr_serverless import config_from_settings, submit_stage1_emr_serverless
        from xpcompute.storage.objects import split_uri

        config = config_from_settings(settings, output_root)
        submission = submit_stage1_emr_serverless(experiment, output_root, config, timeout_s=settings.stage1_lease_s,
                                                  poll_s=settings.emr_poll_s)
        store, key = split_uri(submission.table_uri("analysis"), endpoint_url=settings.s3_endpoint or config.endpoint_url)
        return open_table(key, store)
    if settings.stage1_engine == "spark":
        from xpcompute.pipeline.engines.spark_engine import SparkEngine, local_spark

        engine = SparkEngine(local_spark(settings.spark_master))
        try:
            return run_stage1(experiment, output_root, engine=engine).analysis
        finally:
            engine.close()
    return run_stage1(experiment, output_root, engine="duckdb").analysis


__all__ = [
    "DEFAULT_CONF",
    "Stage1Submission",
    "find_spark_submit",
    "run_stage1_configured",
    "spark_submit_command",
    "submit_stage1",
]
