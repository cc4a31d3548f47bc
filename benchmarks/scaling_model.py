"""A scaling model of the service past one machine: a discrete-event simulation fed by measured job durations.

Why: the service has only ever run on one 2-core machine; whether 20 metrics x 100 slices, or 100 analyses at
once, finish in seconds or minutes on Lambda depends on limits this machine cannot show (function concurrency and
burst scaling, cold starts, the coordinator's reserved concurrency, SQS batching and poller scaling, DynamoDB's
per-partition throughput). The model replays the jobs of a real analysis through those limits, so it can say how
long each scenario takes and what binds first, and it is checked against the local worker pool with 1 and 2
workers, where the real wall time is known.

    .venv/bin/python benchmarks/scaling_model.py all --users 200000 --json build/scaling/model.json

``measure`` (a few minutes at 200k users): runs the 20-metric x 100-slice analysis on the local pool with 1 and 2
workers (recording every job's duration, kind and slice); times the pool's dispatch overhead per job with
``bench_service.throughput``; runs a small analysis against DynamoDB and SQS on moto's server and counts the
DynamoDB requests, items and bytes per job run and per coordinator event; measures one dispatch batch (200 jobs)
with 3,000 jobs due at once, as built (a window of 4 x 200 keys from the keys-only index) and as before (2,000
keys per class from an index projecting whole items; ``measure_due_backlog``); times the handlers' imports (the
cold-start floor). ``predict`` replays those measurements: first through the local pool (the check), then
through Lambda at 10, 100 and 1,000 concurrent functions, for one analysis and for 100 concurrent ones, with
Lambda's asynchronous invocation and with the SQS trigger (batches of 10). ``measure-dynamodb`` measures only
the DynamoDB counts and the cold start again (about a minute) and predicts, keeping the pool runs of an earlier
``measure``. Beside "as built", the predictions show "recount per event (before)": the same run as if each
coordinator event still read every job item of its analysis (``job_counts`` before the per-analysis counters);
with 100 analyses, "backlog due at every event" rows charge every event one dispatch batch with 3,000 jobs due
(as jobs unclaimed past ``redispatch_s`` are), as built and as before the due-jobs window.

Read capacity is charged as DynamoDB does: a Query by the summed size of the entries it reads (an index query
eventually consistent, half the units; the index entries are keys only since ``by_state_keys``), a GetItem or
BatchGetItem by each item's size rounded up to 4 KB (consistent reads: one unit per item here).

What is measured here and what is taken from AWS's documentation is in ``Platform`` (each field says).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# ------------------------------------------------------------------------------------------------ measurements


@dataclass(frozen=True)
class JobSample:
    kind: str  # "slice" or "fit"
    slice_index: int  # order in which the slice jobs started (the first ones run from the table, one builds the cube)
    model: str
    seconds: float


@dataclass
class PoolRun:
    workers: int
    wall_s: float
    first_results_s: float
    jobs: list[JobSample]


def _native() -> str:
    try:
        import xpcompute._core  # noqa: F401
    except ImportError:
        os.environ.setdefault("XPCOMPUTE_NATIVE", "reference")
    from xpcompute import native

    return str(native.backend())


def _samples(jobs: Sequence[Any]) -> list[JobSample]:
    """Jobs as (kind, slice order, model, seconds), slices numbered by when they started."""
    slices = sorted((j for j in jobs if j.kind.value == "slice" and j.started_at is not None), key=lambda j: j.started_at)
    order = {j.slice_id: i for i, j in enumerate(slices)}
    out = []
    for j in jobs:
        if j.started_at is None or j.finished_at is None:
            continue
        out.append(JobSample(j.kind.value, order.get(j.slice_id, 0), j.model or "", j.finished_at - j.started_at))
    return out


def measure_pool(users: int, n_slices: int, worker_counts: Sequence[int]) -> tuple[dict[str, Any], list[PoolRun]]:
    """The benchmark's analysis (every catalog metric x ``n_slices``) on the local pool, once per worker count."""
    from bench_service import _slices, _wait

    from xpcompute import synthetic
    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.planner import fit_specs
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.metrics import metric_names
    from xpcompute.pipeline.slices import SliceFilter
    from xpcompute.pipeline.stage1 import run_stage1

    runs: list[PoolRun] = []
    shape: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:
        config = synthetic.SyntheticConfig(users=users)
        uris = synthetic.write_parquet(synthetic.generate(config), str(Path(home) / "raw"))
        experiment = synthetic.experiment_spec(uris, config, experiment_id="bench", daily=False)
        for workers in worker_counts:
            settings = Settings(home=Path(home) / f"svc{workers}", dispatch="local", slice_engine="cube",
                                workers=workers, worker_idle_s=120.0, lease_s=600.0)
            with EmbeddedRuntime(settings) as rt:
                run_stage1(experiment, rt.coordinator.store, daily=False)
                rt.coordinator.register_experiment(experiment)
                metrics = tuple(m for m in metric_names() if m in experiment.metrics)
                spec = AnalysisSpec(metrics=metrics, slices=tuple(_slices(n_slices)))
                shape = {"users": users, "metrics": len(metrics), "slices": len(spec.slices),
                         "fits_per_slice": len(fit_specs(spec, experiment))}
                warm = rt.coordinator.submit("bench", AnalysisSpec(metrics=metrics[:1], slices=(SliceFilter(),)))
                _wait(rt.coordinator, warm.analysis_id)
                t0 = time.perf_counter()
                aid = rt.coordinator.submit("bench", spec).analysis_id
                first = None
                while rt.coordinator.state.get_analysis(aid).state == "RUNNING":
                    if first is None and rt.coordinator.status(aid).records:
                        first = time.perf_counter() - t0
                    time.sleep(0.02)
                wall = time.perf_counter() - t0
                jobs = rt.coordinator.state.list_jobs(aid)
                runs.append(PoolRun(workers, wall, first if first is not None else wall, _samples(jobs)))
                print(f"  local pool, {workers} worker(s): {wall:.2f} s for {len(jobs)} jobs", flush=True)
    return shape, runs


def measure_dispatch(worker_counts: Sequence[int]) -> dict[int, float]:
    """The local pool's dispatch overhead per job, seconds (``bench_service.throughput``)."""
    from bench_service import throughput

    rows = throughput(200, list(worker_counts))
    return {int(r["workers"]): float(r["overhead_ms_per_job"]) / 1000 for r in rows if r["workers"] != "inline"}


@dataclass
class DynamoCounts:
    """DynamoDB work per job run and per coordinator event, counted on moto's server (requests, items, bytes)."""

    jobs: int = 0
    events: int = 0
    job_requests: float = 0.0
    job_write_items: float = 0.0
    event_requests: float = 0.0
    event_read_items_per_job_in_analysis: float = 0.0  # items an event reads, per job of its analysis
    # split of an event's reads (measured since the per-analysis job counters): items read by point reads and
    # short queries (the job, the analysis, the job counter, a slice's children), and queries that read every job
    # of the analysis per event (the recount ``job_counts`` was before the counters; finalize's listing, once per
    # analysis, is not charged to the events). None: an older measurement, read as all-jobs reads.
    event_point_read_items: float | None = None
    event_full_reads_per_event: float | None = None
    event_write_items_per_child: float = 0.0  # items a slice's event writes, per fit it releases
    item_bytes: float = 0.0
    submit_write_items_per_job: float = 0.0
    # since the keys-only index: an event's index reads in bytes (the due-jobs query, charged by entry size at
    # eventually consistent rates); its point reads then count GetItem and BatchGetItem items, each at least one
    # consistent unit, and table queries (a slice's children). None: an older measurement (index reads counted
    # as whole items among the point reads, BatchGetItem not counted)
    event_index_read_bytes: float | None = None
    event_index_read_rcu: float | None = None
    event_index_read_items: float | None = None
    index_keys_only: bool = False  # the index projects keys only: an index write is one unit whatever the item
    # one dispatch batch (``due_jobs(limit=200)``) with 3,000 jobs due at once (``measure_due_backlog``): as built,
    # and as before the window (2,000 keys per class from an index projecting whole items)
    dispatch_backlog: dict[str, float] | None = None
    dispatch_backlog_before: dict[str, float] | None = None


def measure_dynamodb(users: int = 20_000, n_slices: int = 8) -> DynamoCounts:
    """A small analysis on DynamoDB (moto's server over HTTP), every request counted by phase."""
    from bench_service import _slices
    from moto.server import ThreadedMotoServer

    from xpcompute import synthetic
    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.dispatch.base import JobFinished, RunJob
    from xpcompute.coordinator.runtime import FunctionRuntime
    from xpcompute.metrics import metric_names
    from xpcompute.pipeline.stage1 import run_stage1

    class Recording:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        def submit(self, messages: Sequence[Any]) -> None:
            self.messages.extend(messages)

        def close(self) -> None:
            return

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    phase = ["submit"]
    tally: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    n_jobs_box = [10**9]
    last_index: list[str | None] = [None]

    def count(model: Any, parsed: Any, params: Any = None, **_: Any) -> None:
        t = tally[phase[0]]
        t["requests"] += 1
        if model.name in ("Query", "Scan"):
            n = float(parsed.get("Count", 0))
            if model.name == "Query" and last_index[0]:  # the keys-only index: charged by the entries' bytes
                page = sum(index_entry_size(plain(i)) for i in parsed.get("Items", []))
                t["index_items"] += n
                t["index_bytes"] += page
                t["index_rcu"] += max(1, math.ceil(page / 4096)) / 2  # eventually consistent: half a unit per 4 KB
                return
            t["read_items"] += n
            if n >= 0.5 * n_jobs_box[0]:  # a query that reads (about) every job of the analysis
                t["full_reads"] += 1
                t["full_read_items"] += n
        if model.name == "GetItem" and parsed.get("Item"):
            t["read_items"] += 1
        if model.name == "BatchGetItem":  # due_jobs reads the jobs it chose
            t["read_items"] += sum(len(v) for v in parsed.get("Responses", {}).values())

    def count_writes(params: Any, model: Any, **_: Any) -> None:
        t = tally[phase[0]]
        if model.name == "Query":
            last_index[0] = params.get("IndexName")
        if model.name == "PutItem":
            t["write_items"] += 1
            t["write_bytes"] += len(json.dumps(params.get("Item", {}), default=str))
        elif model.name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                t["write_items"] += len(requests)
                t["write_bytes"] += sum(len(json.dumps(r, default=str)) for r in requests)
        elif model.name == "TransactWriteItems":
            # a job write and its counter's ADD; DynamoDB charges transactional writes twice (2 WCU per KB),
            # so each item counts as two written items
            items = params.get("TransactItems", [])
            t["write_items"] += 2 * len(items)
            t["write_bytes"] += 2 * sum(len(json.dumps(i, default=str)) for i in items)

    try:
        with tempfile.TemporaryDirectory() as home:
            config = synthetic.SyntheticConfig(users=users, seed=3)
            uris = synthetic.write_parquet(synthetic.generate(config), str(Path(home) / "raw"))
            experiment = synthetic.experiment_spec(uris, config, experiment_id="bench", daily=False)
            recorder = Recording()
            settings = Settings(mode="serverless", state="dynamodb", dynamodb_table="scaling-model",
                                dynamodb_endpoint=f"http://{host}:{port}", dynamodb_create=True,
                                objects=str(Path(home) / "objects"), slice_engine="cube", home=Path(home))
            runtime = FunctionRuntime(settings, dispatcher=recorder)
            run_stage1(experiment, runtime.coordinator.store, daily=False)
            runtime.coordinator.register_experiment(experiment)
            client = runtime.coordinator.state._resource.meta.client
            client.meta.events.register("after-call.dynamodb", count)
            client.meta.events.register("provide-client-params.dynamodb", count_writes)
            metrics = tuple(m for m in metric_names() if m in experiment.metrics)
            spec = AnalysisSpec(metrics=metrics, slices=tuple(_slices(n_slices)))
            aid = runtime.coordinator.submit("bench", spec).analysis_id
            n_jobs = len(runtime.coordinator.state.list_jobs(aid))
            n_jobs_box[0] = n_jobs
            tally.pop("list", None)
            slice_events = 0
            while recorder.messages:
                message = recorder.messages.pop(0)
                if isinstance(message, RunJob):
                    phase[0] = "job"
                    runtime.run(message, "model")
                elif isinstance(message, JobFinished):
                    phase[0] = "event"
                    slice_events += ".slice." in message.job_id
                    runtime.coordinate(message)
            phase[0] = "after"
            assert runtime.coordinator.state.get_analysis(aid).state == "SUCCEEDED"
            templates = [j for j in runtime.coordinator.state.list_jobs(aid) if j.kind.value == "fit"]
            endpoint = f"http://{host}:{port}"
            backlog = measure_due_backlog(endpoint, templates)
            backlog_before = measure_due_backlog(endpoint, templates, before=True)
    finally:
        server.stop()
    job, event, submit = tally["job"], tally["event"], tally["submit"]
    fits = n_jobs - n_slices
    full_reads = max(0.0, event["full_reads"] - 1)  # less finalize's one listing of the jobs
    per_full = event["full_read_items"] / max(1.0, event["full_reads"])
    counts = DynamoCounts(
        jobs=n_jobs, events=n_jobs, job_requests=job["requests"] / n_jobs, job_write_items=job["write_items"] / n_jobs,
        event_requests=event["requests"] / n_jobs,
        event_read_items_per_job_in_analysis=event["read_items"] / n_jobs / n_jobs,
        event_point_read_items=(event["read_items"] - event["full_read_items"]) / n_jobs,
        event_full_reads_per_event=full_reads * per_full / n_jobs / n_jobs,
        event_write_items_per_child=event["write_items"] / max(1, fits),
        item_bytes=(job["write_bytes"] + event["write_bytes"] + submit["write_bytes"])
        / max(1.0, job["write_items"] + event["write_items"] + submit["write_items"]),
        submit_write_items_per_job=submit["write_items"] / n_jobs,
        event_index_read_bytes=event["index_bytes"] / n_jobs, event_index_read_rcu=event["index_rcu"] / n_jobs,
        event_index_read_items=event["index_items"] / n_jobs,
        index_keys_only=True,
        dispatch_backlog=backlog, dispatch_backlog_before=backlog_before,
    )
    print(f"  DynamoDB on moto: {n_jobs} jobs; per job run {counts.job_requests:.1f} requests, "
          f"{counts.job_write_items:.1f} items written; per event {counts.event_requests:.1f} requests reading "
          f"{counts.event_point_read_items:.1f} items + {counts.event_full_reads_per_event:.3f} x (jobs in the "
          f"analysis) items + {counts.event_index_read_bytes:.0f} B of index keys; "
          f"item {counts.item_bytes:.0f} B", flush=True)
    for name, b in (("as built", backlog), ("before (2,000 whole items per class)", backlog_before)):
        print(f"  one dispatch batch of {b['limit']:.0f} with {b['due']:,.0f} jobs due, {name}: index "
              f"{b['index_items']:,.0f} entries, {b['index_bytes']:,.0f} B, {b['index_rcu']:.1f} RCU in "
              f"{b['index_requests']:.0f} page(s); then {b['get_items']:.0f} jobs by BatchGetItem, "
              f"{b['get_bytes']:,.0f} B, {b['get_rcu']:.0f} RCU", flush=True)
    return counts


def dynamo_size(value: Any) -> int:
    """Bytes DynamoDB counts for an attribute value (strings UTF-8, numbers about a byte per two digits + 1)."""
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, int | float) or type(value).__name__ == "Decimal":
        digits = len(str(value).lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if isinstance(value, dict):
        return 3 + sum(len(str(k).encode()) + dynamo_size(v) for k, v in value.items())
    return 3 + sum(dynamo_size(v) for v in value)  # list or set


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB charges it: attribute names plus values."""
    return sum(len(k.encode()) + dynamo_size(v) for k, v in item.items())


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item with plain values, whether a hook sees it as the client returns it (``{"S": ...}`` per value) or
    after the resource has converted it (hooks on the operation's own event run before that)."""
    from boto3.dynamodb.types import TypeDeserializer

    d = TypeDeserializer()
    typed = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
    return {k: d.deserialize(v) if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in typed else v
            for k, v in item.items()}


def index_entry_size(keys: dict[str, Any]) -> int:
    """A keys-only index entry from the ``pk, sk, due`` a query returns: those plus the index hash key ``st``
    (``J#PENDING#<priority>``, 11 bytes, or ``J#RUNNING``)."""
    return item_size(keys) + len("st") + 11


def measure_due_backlog(endpoint: str, templates: Sequence[Any], due: int = 3000, analyses: int = 6,
                        limit: int = 200, before: bool = False) -> dict[str, float]:
    """One ``due_jobs(limit)`` call with ``due`` jobs due at once across ``analyses`` analyses (copies of the
    measured analysis's fit jobs, so items have their real size), on a fresh table; what it reads and what
    that costs: index entries, their bytes and read units (pages summed, rounded up to 4 KB, halved for an
    eventually consistent index read), then the jobs read whole (each rounded up to 4 KB, consistent).

    ``before``: the same call as before the window, on a table whose index projects whole items and with a
    window of ``DUE_SCAN_MAX`` (2,000) keys per class, whatever ``limit``. The code before read a little more
    than that: it asked each 1 MB page for 2,000 items and stopped after the page that passed 2,000 (measured on
    that code: 2,390 entries, 3.0 MB, 366 RCU in 3 pages, against 2,000, 2.5 MB, 306 RCU here).
    """
    import uuid
    from dataclasses import replace as copy

    from xpcompute.coordinator.jobs import Analysis, JobState
    from xpcompute.coordinator.state import dynamodb_store as ds

    definition, window = ds.table_definition, getattr(ds, "due_window", None)

    def whole_items(name: str) -> dict[str, Any]:
        out = definition(name)
        for index in out["GlobalSecondaryIndexes"]:
            index["Projection"] = {"ProjectionType": "ALL"}
        return out

    if before:
        ds.table_definition = whole_items
        ds.due_window = lambda n: ds.DUE_SCAN_MAX
    store = None
    try:
        store = ds.DynamoDBStateStore(f"backlog-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint, create=True)
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for a in range(analyses):
            aid = f"backlog{a}"
            jobs = []
            for i in range(due // analyses):
                t = templates[i % len(templates)]
                jobs.append(copy(t, job_id=f"{t.job_id.replace(t.analysis_id, aid, 1)}.{i}", analysis_id=aid,
                                 state=JobState.PENDING, due_at=1.0 + i * 0.001 + a * 0.0001, started_at=None,
                                 finished_at=None, worker=None, lease_expires_at=None, dispatched_at=None,
                                 attempts=0, last_error=None, result_key=None, output={}, version=0, errors=[]))
            for j in jobs:
                item = store._job_item(j)
                items[(item["pk"], item["sk"])] = item
            store.create_analysis(Analysis(analysis_id=aid, experiment_id="bench", request={}, created_at=1.0,
                                           updated_at=1.0), jobs)
        projection = store._resource.meta.client.describe_table(TableName=store.table_name)["Table"][
            "GlobalSecondaryIndexes"][0]["Projection"]["ProjectionType"]
        got: dict[str, float] = defaultdict(float)

        def entry(key: dict[str, Any]) -> int:
            key = plain(key)
            item = items[(key["pk"], key["sk"])]
            if projection == "ALL":
                return item_size(item)
            return item_size({k: item[k] for k in ("pk", "sk", "st", "due")})

        def on_query(parsed: Any, **_: Any) -> None:
            page = sum(entry(k) for k in parsed.get("Items", []))
            got["index_requests"] += 1
            got["index_items"] += float(parsed.get("Count", 0))
            got["index_bytes"] += page
            got["index_rcu"] += max(1, math.ceil(page / 4096)) / 2

        def on_batch(parsed: Any, **_: Any) -> None:
            for rows in parsed.get("Responses", {}).values():
                for row in rows:
                    row = plain(row)
                    size = item_size(items[(row["pk"], row["sk"])])
                    got["get_items"] += 1
                    got["get_bytes"] += size
                    got["get_rcu"] += math.ceil(size / 4096)
            got["get_requests"] += 1

        events = store._resource.meta.client.meta.events
        events.register("after-call.dynamodb.Query", on_query)
        events.register("after-call.dynamodb.BatchGetItem", on_batch)
        batch = store.due_jobs(100.0, limit=limit)
        assert len(batch) == limit
        return {"due": float(due), "limit": float(limit), "item_bytes": statistics.mean(map(item_size, items.values())),
                **{k: got[k] for k in ("index_requests", "index_items", "index_bytes", "index_rcu", "get_requests",
                                       "get_items", "get_bytes", "get_rcu")}}
    finally:
        ds.table_definition = definition
        if window is not None:
            ds.due_window = window
        if store is not None:
            store.close()


def measure_cold_start() -> float:
    """Seconds to import the fit handler in a fresh interpreter (the floor of a cold start; median of 3)."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import functions.fit.handler, functions.slice.handler"], cwd=ROOT,
                       check=True, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'shared'}"})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -------------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Platform:
    """Where jobs run. Each number is measured here (M) or taken from AWS's documentation (D) or assumed (A)."""

    name: str
    concurrency: int  # function slots: local workers, or Lambda concurrent executions (D: account default 1,000)
    dispatch: str  # "pool" (fits before slices), "async" (Lambda asynchronous invoke, FIFO) or "sqs"
    dispatch_s: float  # from a message to its function starting, when a slot is free (M pool; A 0.05 s async)
    cold_start_s: float = 0.0  # a new execution environment's first job waits this long (M: handler import)
    burst_initial: int = 10**9  # new environments available at once (D: 1,000 per function)
    burst_per_s: float = math.inf  # then this many more per second (D: 1,000 every 10 s)
    coordinator_concurrency: int = 10**9  # (serverless.yml: reservedConcurrency 10)
    coordinator_event_s: float = 0.0  # coordinator work per event besides DynamoDB (M, pool: none)
    dynamo: DynamoCounts | None = None  # None: SQLite in the pool's process (no request latency modelled)
    dynamo_request_s: float = 0.006  # one DynamoDB request's latency (D: single-digit milliseconds)
    partition_rcu: float = 3000.0  # D: per partition (one analysis's items share a partition key)
    partition_wcu: float = 1000.0  # D: per partition
    gsi_wcu: float = 1000.0  # D: per partition of the by_state index; every RUNNING job shares one key
    gsi_rcu: float = 3000.0  # D: per partition of the index: the due-jobs query of a class reads one key
    table_rcu: float = 40000.0  # D: the default per-table quota of an on-demand table
    table_wcu: float = 40000.0
    job_overhead_s: float = 0.0  # per job, in the worker: claim, load, report (M: calibrated on the 1-worker run)
    fit_extra_s: float = 0.0  # per fit: reading the compressed slice from S3 (A: 0.03 s; the pool caches it)
    slice_factor: float = 1.0  # slice time multiplier (M in BENCHMARKS.md: stage 2 from S3 on moto, 5.0x local)
    sqs_batch: int = 10  # serverless.yml batchSize
    sqs_pollers_initial: int = 5  # D: the SQS trigger starts with 5 concurrent batches
    sqs_pollers_per_s: float = 300 / 60  # D: and adds up to 300 a minute
    finalize_s: float = 0.2  # the last event: corrections, SRM, scorecard to S3 (A)
    # read units and requests of one dispatch batch with a backlog due, charged to every coordinator event
    # (M: ``measure_due_backlog``; 0: no backlog, what the simulated dispatch gives)
    backlog_index_rcu: float = 0.0
    backlog_get_rcu: float = 0.0
    backlog_requests: float = 0.0


@dataclass
class Workload:
    """The jobs of one analysis: slice durations in start order, and each slice's fit durations."""

    slice_s: list[float]
    fit_s: list[list[float]]

    @classmethod
    def from_run(cls, run: PoolRun) -> Workload:
        slices = sorted((j for j in run.jobs if j.kind == "slice"), key=lambda j: j.slice_index)
        fits: dict[int, list[float]] = defaultdict(list)
        for j in run.jobs:
            if j.kind == "fit":
                fits[j.slice_index].append(j.seconds)
        return cls([j.seconds for j in slices], [sorted(fits[i], reverse=True) for i in range(len(slices))])

    @property
    def jobs(self) -> int:
        return len(self.slice_s) + sum(len(f) for f in self.fit_s)


class Rate:
    """A FIFO server of units at ``rate`` per second: a DynamoDB partition, key or table."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free = 0.0

    def take(self, now: float, units: float) -> float:
        """Reserve ``units``; returns the delay before they are granted."""
        start = max(now, self.free)
        self.free = start + units / self.rate
        return start - now


@dataclass
class Outcome:
    makespan_s: float
    first_results_s: float
    waits: dict[str, float] = field(default_factory=dict)  # seconds jobs or events spent waiting, by cause
    busy_s: float = 0.0
    coordinator_events: int = 0  # job_finished events the coordinator handled
    coordinator_busy_s: float = 0.0  # the seconds its slots held an event (its DynamoDB waits included)


def event_reads(dyn: DynamoCounts, n_jobs: int) -> float:
    """Items one coordinator event reads in an analysis of ``n_jobs`` jobs."""
    if dyn.event_point_read_items is None or dyn.event_full_reads_per_event is None:
        return dyn.event_read_items_per_job_in_analysis * n_jobs
    return dyn.event_point_read_items + dyn.event_full_reads_per_event * n_jobs


def read_units(dyn: DynamoCounts, n_jobs: int) -> tuple[float, float]:
    """Read units of one coordinator event in an analysis of ``n_jobs`` jobs: (the table, the index).

    Point reads (GetItem, BatchGetItem) are charged per item rounded up to 4 KB, consistent; reads of every job
    (a Query) by their summed size; index queries by their entries' bytes, eventually consistent. An older
    measurement counted index entries as items and no BatchGetItem: every read is charged as an item there.
    """
    kb = dyn.item_bytes / 1024
    if dyn.event_index_read_rcu is None:
        return event_reads(dyn, n_jobs) * kb / 4, 0.0
    point = (dyn.event_point_read_items or 0.0) * max(1.0, math.ceil(kb / 4))
    return point + (dyn.event_full_reads_per_event or 0.0) * n_jobs * kb / 4, dyn.event_index_read_rcu


def whole_item_index(dyn: DynamoCounts) -> DynamoCounts:
    """The same counts as if the index still projected whole items (``by_state`` before ``by_state_keys``): index
    writes at the item's size, an event's index entries read at the item's size."""
    if not dyn.index_keys_only or dyn.event_index_read_rcu is None:
        return dyn
    whole = (dyn.event_index_read_items or 0.0) * dyn.item_bytes / 4096 / 2
    return replace(dyn, index_keys_only=False, event_index_read_rcu=max(dyn.event_index_read_rcu, whole))


def backlog(platform: Platform, batch: dict[str, float] | None) -> Platform:
    """The platform with one dispatch batch, measured with 3,000 jobs due, charged to every coordinator event."""
    if batch is None:
        return platform
    return replace(platform, backlog_index_rcu=batch["index_rcu"], backlog_get_rcu=batch["get_rcu"],
                   backlog_requests=batch["index_requests"] + batch["get_requests"])


def recounting(dyn: DynamoCounts) -> DynamoCounts:
    """The same counts as if every event still recounted the analysis's jobs (``job_counts`` before the counters:
    one Query reading every job item), and its job writes were plain conditional puts (one item, not a
    two-item transaction at twice the units)."""
    if dyn.event_full_reads_per_event is None:
        return dyn
    return replace(dyn, event_full_reads_per_event=dyn.event_full_reads_per_event + 1.0,
                   event_point_read_items=max(0.0, (dyn.event_point_read_items or 0.0) - 1.0),
                   job_write_items=dyn.job_write_items / 4.0)


def simulate(workload: Workload, platform: Platform, analyses: int = 1) -> Outcome:
    """Replay ``analyses`` copies of the workload, all submitted at t=0, through ``platform``."""
    p = platform
    dyn = p.dynamo
    waits: dict[str, float] = defaultdict(float)
    seq = 0
    events: list[tuple[float, int, str, Any]] = []

    def push(t: float, kind: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, payload))

    n_jobs = workload.jobs
    kb = (dyn.item_bytes if dyn else 800.0) / 1024
    wcu_item = max(1.0, math.ceil(kb))
    # a keys-only index entry is far under 1 KB: one write unit; a whole-item entry costs the item's units
    wcu_index = 1.0 if dyn is not None and dyn.index_keys_only else wcu_item
    # a point read (GetItem, BatchGetItem) rounds each item up to 4 KB; older measurements: 1 RCU per 4 KB read
    rcu_point = max(1.0, math.ceil(kb / 4)) if dyn is not None and dyn.event_index_read_rcu is not None else kb / 4
    partitions = [(Rate(p.partition_rcu), Rate(p.partition_wcu)) for _ in range(analyses)]
    gsi, gsi_r = Rate(p.gsi_wcu), Rate(p.gsi_rcu)
    table_r, table_w = Rate(p.table_rcu), Rate(p.table_wcu)

    def dynamo(now: float, a: int, requests: float, read_rcu: float, write_items: float, gsi_writes: float,
               index_rcu: float = 0.0) -> float:
        if dyn is None:
            return 0.0
        pr, pw = partitions[a]
        delays = {
            "DynamoDB partition of one analysis (reads)": pr.take(now, read_rcu),
            "DynamoDB partition of one analysis (writes)": pw.take(now, write_items * wcu_item),
            "DynamoDB GSI by_state, one key per job state (writes)": gsi.take(now, gsi_writes * wcu_index),
            "DynamoDB GSI, the due-jobs key of a class (reads)": gsi_r.take(now, index_rcu),
            "DynamoDB table throughput (reads)": table_r.take(now, read_rcu + index_rcu),
            "DynamoDB table throughput (writes)": table_w.take(now, write_items * wcu_item + gsi_writes * wcu_index),
        }
        cause, delay = max(delays.items(), key=lambda kv: kv[1])
        waits[cause] += delay
        return delay + requests * p.dynamo_request_s

    # job = (analysis, slice index, fit index or -1)
    queue: list[tuple[int, int, tuple[int, int, int]]] = []  # (priority, order, job)
    coord_queue: list[tuple[float, int, tuple[int, int, int]]] = []
    busy = 0
    coord_busy = 0
    warm_idle = 0
    environments = 0
    remaining = [n_jobs] * analyses
    finished_at = [0.0] * analyses
    first = [math.inf] * analyses
    total_busy = 0.0
    coord_events, coord_busy_s = 0, 0.0
    enq = 0

    def duration(job: tuple[int, int, int]) -> float:
        _, s, f = job
        return workload.slice_s[s] * p.slice_factor if f < 0 else workload.fit_s[s][f] + p.fit_extra_s

    def dispatch(now: float, job: tuple[int, int, int]) -> None:
        push(now + p.dispatch_s, "arrive", job)

    def environments_allowed(now: float) -> int:
        return int(p.burst_initial + p.burst_per_s * now) if p.burst_per_s != math.inf else 10**9

    def pollers(now: float) -> int:
        return min(p.concurrency, int(p.sqs_pollers_initial + p.sqs_pollers_per_s * now))

    retry_at = [-1.0]

    def retry(t: float) -> None:
        """Look at the queue again at ``t`` (one pending look at a time)."""
        if retry_at[0] <= now_box[0] or t < retry_at[0]:
            retry_at[0] = t
            push(t, "retry", None)

    now_box = [0.0]

    def start_jobs(now: float) -> None:
        nonlocal busy, warm_idle, environments
        now_box[0] = now
        limit = pollers(now) if p.dispatch == "sqs" else p.concurrency
        while queue and busy < limit:
            cold = 0.0
            if warm_idle:
                warm_idle -= 1
            elif environments >= environments_allowed(now):  # Lambda's burst limit: wait for the next allowance
                ready = (environments + 1 - p.burst_initial) / p.burst_per_s
                waits["Lambda burst scaling"] += ready - now
                retry(ready)
                return
            else:
                environments += 1
                cold = p.cold_start_s
                waits["cold starts"] += cold
            take = min(p.sqs_batch if p.dispatch == "sqs" else 1, len(queue))
            busy += 1
            push(now + cold, "step", [heapq.heappop(queue)[2] for _ in range(take)])
        if p.dispatch == "sqs" and queue and limit < p.concurrency:  # more pollers come with time
            retry(now + 1.0 / p.sqs_pollers_per_s)

    def step(now: float, batch: list[tuple[int, int, int]]) -> None:
        """Run the next message of an invocation (an SQS batch runs its messages one after the other)."""
        nonlocal busy, warm_idle, total_busy
        if not batch:
            busy -= 1
            warm_idle += 1
            start_jobs(now)
            return
        job = batch.pop(0)
        if job[1] < 0:  # a coordinator event carried by the SQS queue
            t = now + coordinator_cost(now, job)
            push(t, "coord_done", job)
        else:
            d = duration(job) + p.job_overhead_s
            t = now + d + dynamo(now, job[0], dyn.job_requests if dyn else 0, rcu_point,
                                 dyn.job_write_items if dyn else 0, 2)
            total_busy += d
            push(t, "done", job)
        push(t, "step", batch)

    def coordinator_cost(now: float, job: tuple[int, int, int]) -> float:
        """One job_finished event: read the job, release a slice's fits, count the analysis's jobs (all of them)."""
        nonlocal coord_events, coord_busy_s
        a, s, f = job
        cost = p.coordinator_event_s
        if dyn is not None:
            s = -s - 1 if s < 0 else s
            children = len(workload.fit_s[s]) if f == -1 else 0
            table_rcu, index_rcu = read_units(dyn, n_jobs)
            cost += dynamo(
                now, a, dyn.event_requests + 2 * children + p.backlog_requests, table_rcu + p.backlog_get_rcu,
                dyn.event_write_items_per_child * children, children, index_rcu + p.backlog_index_rcu,
            )
        coord_events += 1
        coord_busy_s += cost
        return cost

    def start_coordinator(now: float) -> None:
        nonlocal coord_busy
        while coord_queue and coord_queue[0][0] <= now and coord_busy < p.coordinator_concurrency:
            enqueued, _, job = heapq.heappop(coord_queue)
            waits["coordinator concurrency"] += now - enqueued
            coord_busy += 1
            push(now + coordinator_cost(now, job), "coord_done", job)

    def enqueue(now: float, job: tuple[int, int, int]) -> None:
        nonlocal enq
        enq += 1
        fit_first = p.dispatch == "pool" and job[2] >= 0
        heapq.heappush(queue, (0 if fit_first else 1 if p.dispatch == "pool" else 0, enq, job))

    def report(now: float, job: tuple[int, int, int]) -> None:
        """A finished job's report reaches the coordinator (its own function, or the SQS queue)."""
        a, s, f = job
        if p.dispatch == "sqs":
            enqueue(now, (a, -(s + 1), f))  # s < 0 marks a coordinator event in the job queue
            start_jobs(now)
        else:
            nonlocal enq
            enq += 1
            heapq.heappush(coord_queue, (now + p.dispatch_s, enq, job))
            push(now + p.dispatch_s, "coord", None)

    def coordinated(now: float, job: tuple[int, int, int]) -> None:
        a, s, f = job
        s = -s - 1 if s < 0 else s
        if f == -1:  # a slice landed: release its fits
            for i in range(len(workload.fit_s[s])):
                dispatch(now, (a, s, i))
        remaining[a] -= 1
        if f >= 0:
            first[a] = min(first[a], now)
        if remaining[a] == 0:
            finished_at[a] = now + p.finalize_s

    for a in range(analyses):
        submit_delay = dynamo(0.0, a, 2, 0, (dyn.submit_write_items_per_job if dyn else 0) * n_jobs, 0)
        for s in range(len(workload.slice_s)):
            dispatch(submit_delay, (a, s, -1))

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            enqueue(now, payload)
            start_jobs(now)
        elif kind == "done":
            report(now, payload)
        elif kind == "step":
            step(now, payload)
        elif kind == "retry":
            start_jobs(now)
        elif kind == "coord":
            start_coordinator(now)
        elif kind == "coord_done":
            if p.dispatch != "sqs":
                coord_busy -= 1
            coordinated(now, payload)
            if p.dispatch != "sqs":
                start_coordinator(now)
    return Outcome(max(finished_at), min(first), dict(waits), total_busy, coord_events, coord_busy_s)


def lifted(platform: Platform) -> dict[str, Platform]:
    """The platform with one limit removed at a time, to find which one binds first."""
    inf = 1e12
    out = {f"function concurrency ({platform.concurrency:,})": replace(platform, concurrency=10**9)}
    if platform.dispatch == "sqs":
        out["SQS trigger scaling (5 batches, +300 a minute)"] = replace(platform, sqs_pollers_initial=10**9)
    elif platform.coordinator_concurrency < 10**9:
        out[f"coordinator concurrency ({platform.coordinator_concurrency})"] = replace(
            platform, coordinator_concurrency=10**9)
    if platform.dynamo is not None:
        out["DynamoDB partition of one analysis (3,000 RCU/s, 1,000 WCU/s)"] = replace(
            platform, partition_rcu=inf, partition_wcu=inf)
        out["DynamoDB by_state index keys (1,000 WCU/s, 3,000 RCU/s each)"] = replace(platform, gsi_wcu=inf,
                                                                                       gsi_rcu=inf)
        out["DynamoDB table quota (40,000 RCU/s and WCU/s)"] = replace(platform, table_rcu=inf, table_wcu=inf)
        out["DynamoDB throughput, every limit at once (partition, index keys, table quota)"] = replace(
            platform, partition_rcu=inf, partition_wcu=inf, gsi_wcu=inf, gsi_rcu=inf, table_rcu=inf, table_wcu=inf)
    if platform.cold_start_s:
        out["cold starts"] = replace(platform, cold_start_s=0.0)
    return out


def first_bottleneck(workload: Workload, platform: Platform, analyses: int,
                     outcome: Outcome) -> tuple[str, float, dict[str, float]]:
    """The limit whose removal shortens the run most, the time that saves, and every limit's saving.

    Why counterfactuals rather than counting waits: a wait shows where work queued, not why (events queue for the
    coordinator because each one waits on DynamoDB); lifting one limit at a time says which limit costs the time.
    When no limit saves 5% of the run, what is left is the critical path: the jobs themselves.
    """
    saved = {name: outcome.makespan_s - simulate(workload, p, analyses).makespan_s
             for name, p in lifted(platform).items()}
    name, seconds = max(saved.items(), key=lambda kv: kv[1])
    if seconds < 0.05 * outcome.makespan_s:
        return "critical path (the cube-building slice, then its fits)", seconds, saved
    return name, seconds, saved


def calibrate_overhead(run: PoolRun) -> float:
    """The service's work per job beyond the job itself: what a serial (1-worker) run took beyond its jobs, per job.

    Claims, SQLite writes, the report and the fan-out; the benchmark's dispatch overhead (measured against an inline
    run, which pays the same work) does not see it.
    """
    busy = sum(j.seconds for j in run.jobs)
    return max(0.0, (run.wall_s - busy) / len(run.jobs))


def lambda_platform(dispatch: str, concurrency: int, dyn: DynamoCounts, cold_start_s: float,
                    job_overhead_s: float) -> Platform:
    return Platform(
        f"Lambda {dispatch}", concurrency, dispatch, 0.05 if dispatch == "async" else 0.02, cold_start_s=cold_start_s,
        job_overhead_s=job_overhead_s,
        burst_initial=1000, burst_per_s=100.0, coordinator_concurrency=10, dynamo=dyn, fit_extra_s=0.03,
        slice_factor=5.0, table_rcu=40000.0, table_wcu=40000.0,
    )


def predict(measured: dict[str, Any], dispatches: Sequence[str] = ("async", "sqs")) -> dict[str, Any]:
    runs = [PoolRun(r["workers"], r["wall_s"], r["first_results_s"], [JobSample(**j) for j in r["jobs"]])
            for r in measured["pool_runs"]]
    dyn = DynamoCounts(**measured["dynamodb"])
    overhead = {int(k): v for k, v in measured["dispatch_s"].items()}
    serial = min(runs, key=lambda r: r.workers)
    coord_s = calibrate_overhead(serial)
    check = []
    for run in runs:  # the 1-worker run calibrates the coordinator's cost; the 2-worker run is the test
        pool = Platform(f"local pool x{run.workers}", run.workers, "pool", overhead.get(run.workers, 0.002),
                        job_overhead_s=coord_s)
        got = simulate(Workload.from_run(run), pool)
        check.append({"workers": run.workers, "role": "calibration" if run is serial else "check",
                      "measured_s": run.wall_s, "predicted_s": got.makespan_s,
                      "error": got.makespan_s / run.wall_s - 1, "job_seconds": sum(j.seconds for j in run.jobs),
                      "measured_first_s": run.first_results_s, "predicted_first_s": got.first_results_s})
    base = Workload.from_run(serial)
    cold = float(measured["cold_start_s"])
    # before the per-analysis job counters, for comparison: each event read every job item of its analysis
    rows = []
    # (variant, counts, dispatch, backlog batch or None, analyses)
    scenarios: list[tuple[str, DynamoCounts, str, dict[str, float] | None, tuple[int, ...]]] = [
        ("as built", dyn, d, None, (1, 100)) for d in dispatches]
    if dyn.event_full_reads_per_event is not None:
        scenarios.append(("recount per event (before)", recounting(dyn), "async", None, (1, 100)))
    if dyn.index_keys_only:
        scenarios.append(("whole-item index (before)", whole_item_index(dyn), "async", None, (100,)))
    if dyn.dispatch_backlog is not None and dyn.dispatch_backlog_before is not None:
        scenarios.append(("backlog due at every event", dyn, "async", dyn.dispatch_backlog, (100,)))
        scenarios.append(("backlog, before the window", whole_item_index(dyn), "async", dyn.dispatch_backlog_before,
                          (100,)))
    for variant, counts, dispatch, batch, analyses_set in scenarios:
        for analyses in analyses_set:
            for c in (10, 100, 1000):
                lam = backlog(lambda_platform(dispatch, c, counts, cold, coord_s), batch)
                t = time.perf_counter()
                out = simulate(base, lam, analyses)
                name, saved, savings = first_bottleneck(base, lam, analyses, out)
                rows.append({"variant": variant, "dispatch": dispatch, "analyses": analyses, "concurrency": c,
                             "makespan_s": out.makespan_s, "first_results_s": out.first_results_s,
                             "bottleneck": name, "lifting_it_saves_s": saved, "savings_s": savings,
                             # where the time queued, summed over jobs and events (a wait is not a cause:
                             # ``first_bottleneck``), and how busy the coordinator's slots were
                             "waits_s": out.waits, "coordinator_events": out.coordinator_events,
                             "coordinator_busy_s": out.coordinator_busy_s,
                             "sim_s": time.perf_counter() - t})
                print(f"  {variant:>26} {dispatch:>5} x{analyses:<3} at {c:>4}: {out.makespan_s:10.1f} s "
                      f"({name}; lifting it saves {saved:.0f} s)", flush=True)
    return {"check": check, "coordinator_event_s": coord_s, "predictions": rows, "jobs_per_analysis": base.jobs}


def print_tables(measured: dict[str, Any], predicted: dict[str, Any]) -> None:
    shape = measured["shape"]
    print(f"\nScale: {shape['users']:,} users, {shape['metrics']} metrics x {shape['slices']} slices "
          f"({predicted['jobs_per_analysis']:,} jobs per analysis), native backend {measured['native']}, "
          f"{measured['cores']} cores")
    dyn = measured["dynamodb"]
    for name, key in (("as built", "dispatch_backlog"), ("before the window", "dispatch_backlog_before")):
        b = dyn.get(key)
        if b:
            print(f"One dispatch batch of {b['limit']:.0f} with {b['due']:,.0f} jobs due, {name}: "
                  f"{b['index_items']:,.0f} index entries ({b['index_bytes']:,.0f} B, {b['index_rcu']:.1f} RCU), "
                  f"{b['get_items']:.0f} jobs read whole ({b['get_bytes']:,.0f} B, {b['get_rcu']:.0f} RCU)")
    print(f"\nCheck against the local pool (service work per job, calibrated on the 1-worker run: "
          f"{1000 * predicted['coordinator_event_s']:.1f} ms):\n")
    print("| workers | role | job seconds (sum) | measured s | predicted s | error | first results measured / predicted s |")
    print("|---|---|---|---|---|---|---|")
    for c in predicted["check"]:
        print(f"| {c['workers']} | {c['role']} | {c['job_seconds']:.1f} | {c['measured_s']:.1f} | "
              f"{c['predicted_s']:.1f} | {c['error']:+.0%} | {c['measured_first_s']:.2f} / {c['predicted_first_s']:.2f} |")
    print("\nPredictions on Lambda (coordinator reserved concurrency 10, DynamoDB on demand):\n")
    print("| coordinator | dispatch | analyses | concurrent functions | time s | first results s | first bottleneck "
          "(time saved by lifting it) |")
    print("|---|---|---|---|---|---|---|")
    for r in predicted["predictions"]:
        label = "async invoke" if r["dispatch"] == "async" else "SQS, batch 10"
        others = sorted(((v, k) for k, v in r["savings_s"].items() if k != r["bottleneck"]), reverse=True)
        then = f"; next: {others[0][1]} ({others[0][0]:,.0f} s)" if others and others[0][0] > 0.05 * r["makespan_s"] else ""
        print(f"| {r['variant']} | {label} | {r['analyses']} | {r['concurrency']:,} | {r['makespan_s']:,.1f} | "
              f"{r['first_results_s']:,.1f} | {r['bottleneck']} ({r['lifting_it_saves_s']:,.0f} s){then} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["measure", "measure-dynamodb", "predict", "all"])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--json", default=str(ROOT / "build" / "scaling" / "model.json"))
    args = parser.parse_args(argv)
    path = Path(args.json)
    if args.what in ("measure", "all"):
        native = _native()
        print(f"measuring at {args.users:,} users (native backend {native}) ...", flush=True)
        shape, runs = measure_pool(args.users, args.slices, (1, 2))
        measured = {
            "native": native, "cores": os.cpu_count(), "shape": shape,
            "pool_runs": [{"workers": r.workers, "wall_s": r.wall_s, "first_results_s": r.first_results_s,
                           "jobs": [asdict(j) for j in r.jobs]} for r in runs],
            "dispatch_s": measure_dispatch((1, 2)),
            "dynamodb": asdict(measure_dynamodb()),
            "cold_start_s": measure_cold_start(),
        }
        print(f"  dispatch overhead per job: {measured['dispatch_s']}; handler import {measured['cold_start_s']:.2f} s")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"measured": measured}, indent=1))
    data = json.loads(path.read_text())
    if args.what == "measure-dynamodb":  # the DynamoDB counts and the cold start again, the pool runs kept
        _native()
        data["measured"]["dynamodb"] = asdict(measure_dynamodb())
        data["measured"]["cold_start_s"] = measure_cold_start()
        print(f"  handler import {data['measured']['cold_start_s']:.2f} s", flush=True)
        path.write_text(json.dumps(data, indent=1))
        data["predicted"] = predict(data["measured"])
        path.write_text(json.dumps(data, indent=1))
        print_tables(data["measured"], data["predicted"])
    if args.what in ("predict", "all"):
        data["predicted"] = predict(data["measured"])
        path.write_text(json.dumps(data, indent=1))
        print_tables(data["measured"], data["predicted"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
