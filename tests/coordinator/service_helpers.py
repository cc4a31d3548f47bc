"""Small synthetic analysis tables published the way stage 1 publishes them, raw sources and specs for
registered experiments, and wait helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from xpcompute.coordinator.service import Coordinator
from xpcompute.pipeline.tables import publish_table
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

COUNTRIES = ("US", "CA", "MX", "BR")


def analysis_table(n: int = 4000, seed: int = 0, effect: float = 0.2) -> pa.Table:
    """One row per user: cell, country, device, a continuous metric with a true effect, a binary metric."""
    rng = np.random.default_rng(seed)
    cell = rng.choice(["control", "treatment"], n)
    country = rng.choice(COUNTRIES, n)
    pre = rng.gamma(2.0, 1.0, n)
    hours = pre * 0.5 + rng.normal(1.0, 1.0, n) + effect * (cell == "treatment")
    return pa.table({
        "user_id": np.arange(n, dtype=np.int64),
        "cell": cell,
        "country": country,
        "device": rng.choice(["ios", "tv"], n),
        "bucket": np.arange(n, dtype=np.int64) % 50,
        "hours": hours,
        "pre_hours": pre,
        "is_streamer": (rng.random(n) < 0.4 + 0.05 * (cell == "treatment")).astype(np.float64),
    })


def publish(store: ObjectStore, experiment_id: str, table: pa.Table) -> str:
    """Publish ``table`` as the experiment's analysis table (manifest and all); returns its key."""
    key = keys.analysis_table(experiment_id)

    def write(fs: pafs.FileSystem, path: str) -> pa.Schema:
        fs.create_dir(path, recursive=True)
        pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)
        return table.schema

    publish_table(store, key, write)
    return key


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def wait_done(coordinator: Coordinator, analysis_id: str, timeout: float = 60.0) -> str:
    """Poll until the analysis leaves RUNNING; returns its final state."""
    wait_for(lambda: coordinator.state.get_analysis(analysis_id).state != "RUNNING", timeout)
    return coordinator.state.get_analysis(analysis_id).state.value


class FakeClock:
    """A clock the test moves by hand: leases and backoffs expire exactly when the test says."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def reference_records(
    table: pa.Table, slice_filter: object, metric: str, model: str, covariates: tuple[str, ...] = ()
) -> list[object]:
    """The same fit run directly in-process, without the service: filter, compress, fit."""
    from xpcompute.models import fit_table
    from xpcompute.spec import FitSpec

    sliced = table if slice_filter.is_everyone else table.filter(slice_filter.to_arrow_mask(table))  # type: ignore[attr-defined]
    spec = FitSpec(metric=metric, treatment="cell", model=model, covariates=covariates)  # type: ignore[arg-type]
    return list(fit_table(sliced, spec).records)


class Recorder:
    """A loopback HTTP server that records each request and answers with a fixed status.

    It speaks just enough of a remote API (Lambda's Invoke, an OpenFaaS gateway)
    for a dispatcher to be tested over real HTTP.
    """

    def __init__(self, status: int = 202) -> None:
        import http.server
        import threading

        self.requests: list[dict[str, object]] = []
        self.status = status
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: A small registered experiment for the service tests: two continuous metrics with a CUPED covariate, a 0/1
#: metric and a ratio, over synthetic raw sources (stage 1 turns them into the analysis table).
SPEC_METRICS = ("streaming_hours", "longest_session_hours", "is_streamer", "rebuffer_rate")


def raw_sources(root: str, users: int = 2000, seed: int = 3) -> tuple[dict[str, str], object]:
    """Synthetic raw tables (allocations, users, playback, ...) as Parquet files under ``root``: (uris, config)."""
    from xpcompute import synthetic

    config = synthetic.SyntheticConfig(users=users, seed=seed, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), root)
    return dict(uris), config


def spec_body(uris: dict[str, str], config: object, experiment_id: str = "autoplay", **overrides: object) -> dict[str, object]:
    """The experiment spec as the JSON a client PUTs (dates as ISO strings, absolute source paths)."""
    cfg: Any = config
    body: dict[str, object] = {
        "id": experiment_id,
        "description": "autoplay on the home page",
        "cells": list(cfg.cells),
        "control": cfg.control,
        "window": {"start": cfg.start.isoformat(), "end": cfg.end.isoformat(), "pre_days": cfg.pre_days},
        "sources": {name: {"uri": uri} for name, uri in uris.items()},
        "dimensions": ["country", "device"],
        "covariates": ["pre_streaming_hours"],
        "metrics": list(SPEC_METRICS),
        "daily": False,
    }
    body.update(overrides)
    return body
