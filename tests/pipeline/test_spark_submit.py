"""Stage 1 as a Spark application: submitted with spark-submit, followed to completion, checked against DuckDB.

The ``spark`` tests submit to ``local[1]`` (and, with XPCOMPUTE_SLOW=1, to a
real standalone master and worker on 127.0.0.1) and compare the published
analysis table with DuckDB's row for row. The rest run without a JVM: a fake
``spark-submit`` (a shell script under a fake SPARK_HOME) exercises how the
submitter follows the log, reads the status, maps errors and stops a job that
runs past its timeout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpcompute.config import Settings
from xpcompute.errors import InputError, JobFailedError, MissingColumnError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline import spark_app
from xpcompute.pipeline.spark_submit import (
    find_spark_submit,
    run_stage1_configured,
    spark_submit_command,
    submit_stage1,
)
from xpcompute.pipeline.stage1 import run_stage1
from xpcompute.pipeline.tables import PublishedTable, open_table
from xpcompute.synthetic import SyntheticConfig, experiment_spec, generate, write_parquet

USERS = 3_000

needs_java = pytest.mark.skipif(
    shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
    reason="spark-submit needs Java 17 (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)",
)
SLOW = os.environ.get("XPCOMPUTE_SLOW") == "1"  # the rule of tests/conftest.py's slow_enabled


@dataclass(frozen=True)
class Small:
    spec: ExperimentSpec
    root: Path
    playback: pa.Table


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    """A 3k-user synthetic experiment without the daily table: enough rows for every metric, quick on Spark."""
    root = tmp_path_factory.mktemp("submit")
    config = SyntheticConfig(users=USERS, seed=11)
    data = generate(config)
    uris = write_parquet(data, str(root / "raw"))
    return Small(experiment_spec(uris, config, daily=False), root, data.playback)


@pytest.fixture(scope="module")
def duck_analysis(small: Small) -> PublishedTable:
    return run_stage1(small.spec, str(small.root / "duck"), engine="duckdb").analysis


def assert_same_rows(expected: PublishedTable, actual: PublishedTable) -> None:
    """Same columns, types and values row for row once both are sorted by user."""
    a = expected.read().sort_by("user_id")
    b = actual.read().sort_by("user_id")
    assert a.num_rows == b.num_rows > 0
    assert a.column_names == b.column_names
    for name in a.column_names:
        assert a.schema.field(name).type == b.schema.field(name).type, name
        assert a.column(name).combine_chunks().equals(b.column(name).combine_chunks()), name


# -- against a real spark-submit ------------------------------------------------------------------------------


@pytest.mark.spark
@needs_java
def test_submitted_stage1_publishes_the_duckdb_table(small: Small, duck_analysis: PublishedTable) -> None:
    lines: list[str] = []
    sub = submit_stage1(small.spec, str(small.root / "spark"), "local[1]", timeout_s=600, on_line=lines.append)
    assert sub.ok and sub.exit_code == 0
    assert sub.application_id is not None and sub.application_id.startswith("local-")
    assert f"XPCOMPUTE_STAGE1 application_id={sub.application_id} master=local[1]" in lines
    assert sub.status is not None and sub.status["master"] == "local[1]"  # the driver kept the submitter's master
    assert sub.status["seconds"]["total"] > 0 and sub.seconds >= sub.status["seconds"]["total"]
    assert "--deploy-mode" in sub.command and sub.command[sub.command.index("--deploy-mode") + 1] == "client"
    table = open_table(sub.table_uri("analysis"))
    assert table.manifest["engine"] == "spark" and table.run_id == sub.status["tables"]["analysis"]["run"]
    assert_same_rows(duck_analysis, table)


@pytest.mark.spark
@needs_java
def test_missing_column_fails_the_submission_with_the_typed_error(small: Small, tmp_path: Path) -> None:
    pq.write_table(small.playback.drop_columns(["title_id"]), tmp_path / "no_title.parquet")
    sources = dict(small.spec.sources)
    sources["playback"] = sources["playback"].model_copy(update={"uri": str(tmp_path / "no_title.parquet")})
    spec = small.spec.model_copy(update={"sources": sources})
    with pytest.raises(MissingColumnError, match=r"source 'playback' .* has no column 'title_id'") as info:
        submit_stage1(spec, str(tmp_path / "out"), "local[1]", timeout_s=600)
    assert re.search(r"stage 1 in Spark application local-\d+", str(info.value))
    cause = info.value.__cause__
    assert isinstance(cause, JobFailedError)
    assert "MissingColumnError" in str(cause) and "Last log lines:" in str(cause)
    assert "Traceback" in str(cause)  # the driver's traceback is in the log tail
    assert not (tmp_path / "out" / spec.id / "analysis" / "_MANIFEST.json").exists()


@pytest.mark.spark
@needs_java
def test_an_unknown_master_fails_before_any_application(small: Small, tmp_path: Path) -> None:
    with pytest.raises(JobFailedError, match=r"exited with code \d+ before application .* reported an outcome") as info:
        submit_stage1(small.spec, str(tmp_path / "out"), "nowhere://x", timeout_s=300)
    assert "Master must either be yarn or start with spark, k8s, or local" in str(info.value)


# -- against a standalone master and worker on 127.0.0.1 -------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    master_url: str
    logs: Path


def _spark_class() -> str:
    return str(Path(find_spark_submit()).with_name("spark-class"))


def _start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace")) if log.exists() else None
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {log} within {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=15)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Spark standalone master and one worker (1 core, 1 GiB) on loopback, on free ports, no REST server."""
    logs = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "256m",
           "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
    master = _start([_spark_class(), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", "0", "--webui-port", "0"], logs / "master.log", env)
    procs = [master]
    try:
        url = _wait_for(logs / "master.log", r"Starting Spark master at (spark://127\.0\.0\.1:\d+)", master).group(1)
        worker = _start([_spark_class(), "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                         "--port", "0", "--webui-port", "0", "--cores", "1", "--memory", "1g",
                         "--work-dir", str(logs / "work")], logs / "worker.log", env)
        procs.append(worker)
        _wait_for(logs / "worker.log", "Successfully registered with master", worker)
        yield Cluster(url, logs)
    finally:
        for proc in reversed(procs):
            _stop_group(proc)


@pytest.mark.slow
@pytest.mark.spark
@needs_java
@pytest.mark.skipif(not SLOW, reason="starts a Spark standalone master and worker (about a minute); set XPCOMPUTE_SLOW=1")
def test_submitted_to_a_standalone_cluster(
    small: Small, duck_analysis: PublishedTable, standalone: Cluster
) -> None:
    conf = {"spark.executor.memory": "512m", "spark.cores.max": "1"}
    lines: list[str] = []
    sub = submit_stage1(small.spec, str(small.root / "standalone"), standalone.master_url, conf=conf,
                        timeout_s=600, on_line=lines.append)
    assert sub.application_id is not None and re.fullmatch(r"app-\d{14}-\d{4}", sub.application_id)
    assert any(f"Connected to Spark cluster with app ID {sub.application_id}" in line for line in lines)
    assert sub.status is not None and sub.status["master"] == standalone.master_url
    assert_same_rows(duck_analysis, open_table(sub.table_uri()))
    master_log = (standalone.logs / "master.log").read_text(errors="replace")
    assert f"Removing app {sub.application_id}" in master_log  # the cluster saw the application finish


# -- without a JVM: the command line, the settings, the driver program's status, a fake spark-submit -----------


def test_command_line_runs_spark_app_in_client_mode_on_this_python(tmp_path: Path) -> None:
    cmd = spark_submit_command("spec.json", "out", "status.json", "local[1]",
                               conf={"spark.ui.enabled": "true", "spark.driver.memory": "1g"}, daily=False)
    assert Path(cmd[0]).name == "spark-submit" and os.access(cmd[0], os.X_OK)
    assert cmd[cmd.index("--master") + 1] == "local[1]" and cmd[cmd.index("--deploy-mode") + 1] == "client"
    confs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--conf"]
    assert f"spark.pyspark.python={sys.executable}" in confs and "spark.driver.host=127.0.0.1" in confs
    assert [c for c in confs if c.startswith("spark.ui.enabled=")] == ["spark.ui.enabled=true"]  # conf overrides
    assert "spark.driver.memory=1g" in confs
    app = cmd[cmd.index("--spec") - 1]
    assert app.endswith("spark_app.py") and Path(app).is_file()
    assert cmd[-1] == "--no-daily"
    with pytest.raises(JobFailedError, match=r"has no executable bin/spark-submit; point it at a Spark install"):
        find_spark_submit(str(tmp_path))


def test_stage1_engine_and_spark_master_settings() -> None:
    default = Settings.from_env({})
    assert (default.stage1_engine, default.spark_master) == ("duckdb", "local[*]")
    s = Settings.from_env({"XPCOMPUTE_STAGE1_ENGINE": "spark-submit", "XPCOMPUTE_SPARK_MASTER": "spark://h:7077"})
    assert (s.stage1_engine, s.spark_master) == ("spark-submit", "spark://h:7077")
    with pytest.raises(InputError, match="XPCOMPUTE_STAGE1_ENGINE"):
        Settings.from_env({"XPCOMPUTE_STAGE1_ENGINE": "flink"})


def test_configured_stage1_defaults_to_duckdb(small: Small, duck_analysis: PublishedTable, tmp_path: Path) -> None:
    table = run_stage1_configured(small.spec, str(tmp_path), Settings.from_env({}))
    assert table.manifest["engine"] == "duckdb"
    assert_same_rows(duck_analysis, table)


def test_app_loads_its_spec_and_reports_a_bad_one_in_its_status(small: Small, tmp_path: Path) -> None:
    good = tmp_path / "spec.json"
    good.write_text(small.spec.model_dump_json())
    assert spark_app.load_spec(str(good)).model_dump() == small.spec.model_dump()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    status = tmp_path / "status" / "status.json"
    code = spark_app.main(["--spec", str(bad), "--output-root", str(tmp_path / "out"), "--status", str(status)])
    reported = json.loads(status.read_text())
    assert code == 1 and reported["ok"] is False
    assert reported["error"]["type"] == "InputError" and "is not valid JSON" in reported["error"]["message"]
    assert "application_id" not in reported  # it failed before starting a session


FAKE_SUBMIT = """#!/bin/sh
# A stand-in for spark-submit: logs like Spark, writes the status the mode asks for, exits like Spark would.
status=""
while [ $# -gt 0 ]; do [ "$1" = "--status" ] && status="$2"; shift; done
echo "26/12/01 00:00:00 INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-20261201000000-0007"
case "$FAKE_MODE" in
  ok) printf '{"ok": true, "application_id": "app-20261201000000-0007", "tables": {"analysis": {"uri": "/x"}}}' > "$status"; exit 0;;
  java) echo "py4j.protocol.Py4JJavaError: executor lost"
        printf '{"ok": false, "error": {"type": "Py4JJavaError", "message": "executor lost"}}' > "$status"; exit 1;;
  input) printf '{"ok": false, "error": {"type": "ColumnTypeError", "message": "column x has type string"}}' > "$status"; exit 1;;
  crash) echo "Exception in thread main java.lang.OutOfMemoryError: Java heap space"; exit 137;;
  hang) sleep 120 & echo $! > "$FAKE_PIDFILE"; wait;;
esac
"""


@pytest.fixture
def fake_home(tmp_path: Path) -> str:
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "spark-submit"
    script.write_text(FAKE_SUBMIT)
    script.chmod(0o755)
    return str(home)


def test_follower_reads_the_id_and_status(small: Small, fake_home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "ok")
    seen: list[str] = []
    sub = submit_stage1(small.spec, "out", "spark://127.0.0.1:7077", spark_home=fake_home, on_line=seen.append)
    assert sub.ok and sub.application_id == "app-20261201000000-0007" and sub.table_uri() == "/x"
    assert len(seen) == 1 and "Connected to Spark cluster" in sub.log_tail
    with pytest.raises(JobFailedError, match=r"reported no 'user_day' table \(it published: analysis\)"):
        sub.table_uri("user_day")


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("java", JobFailedError, r"app-20261201000000-0007 .*exit code 1\): Py4JJavaError: executor lost(.|\n)*Last log lines"),
        ("input", InputError, r"column x has type string \(stage 1 in Spark application app-20261201000000-0007\)"),
        ("crash", JobFailedError, r"exited with code 137 before application app-20261201000000-0007(.|\n)*OutOfMemoryError"),
    ],
)
def test_follower_raises_typed_errors_with_the_log_tail(
    small: Small, fake_home: str, monkeypatch: pytest.MonkeyPatch, mode: str, error: type[Exception], message: str
) -> None:
    monkeypatch.setenv("FAKE_MODE", mode)
    with pytest.raises(error, match=message) as info:
        submit_stage1(small.spec, "out", "spark://127.0.0.1:7077", spark_home=fake_home)
    if mode == "input":
        assert type(info.value).__name__ == "ColumnTypeError" and isinstance(info.value.__cause__, JobFailedError)


def test_follower_stops_a_job_past_its_timeout(
    small: Small, fake_home: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    monkeypatch.setenv("FAKE_MODE", "hang")
    monkeypatch.setenv("FAKE_PIDFILE", str(pidfile))
    started = time.monotonic()
    with pytest.raises(JobFailedError, match=r"app-20261201000000-0007 on local\[1\] did not finish within 1 s"):
        submit_stage1(small.spec, "out", "local[1]", spark_home=fake_home, timeout_s=1)
    assert time.monotonic() - started < 20
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)  # the whole process group was stopped, not only spark-submit


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it counts as stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
