"""The Lambda container image, short of building it (no Docker on these machines).

What can go wrong in the image short of ``docker build`` is checked here:

- the runtime dependency set (``infra/aws/requirements.txt``), installed with pip into a folder the way the
  Dockerfile installs it (wheels only, for the image's Python and Amazon Linux 2023's glibc), fits the 10 GB
  container limit with the base image, holds no dev or test package, and is too large for a zip with layers (the
  reason serverless.yml deploys an image);
- the four handlers run from that folder alone (the project's .venv is not on the path, so an import that only a
  dev package satisfies fails here as it would in the image) through the real runtime interface client,
  ``awslambdaric``, against a Lambda Runtime API served by this test on 127.0.0.1: a real API Gateway event starts
  an analysis, its slice and fit jobs are delivered the way Lambda's asynchronous invocation delivers them, the
  handlers' responses are checked, and the scorecard equals an in-process fit. An SQS batch and a scheduled tick
  are answered; a typed error a handler raises comes back on the ``/error`` route by type, and a handler that
  cannot be imported on ``/init/error``.

The folders are cached under ``build/lambda-image/`` by a hash of the requirements, the Python version and the
platform tags, so later runs reuse them: the first run installs about 600 MB from the package index (about 30 s per
folder here), later runs only start the functions.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from service_helpers import Recorder, analysis_table, publish, reference_records

from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import S3ObjectStore

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "infra" / "aws" / "requirements.txt"
DOCKERFILE = ROOT / "Dockerfile"
EVENTS = ROOT / "tests" / "events"
CACHE = ROOT / "build" / "lambda-image"

CONTAINER_LIMIT = 10 * 1000**3
"""Lambda's limit for a container image, uncompressed, base image included (10 GB)."""
ZIP_LIMIT = 250 * 1024**2
"""Lambda's limit for a zip function and its layers, unzipped (250 MB)."""
BASE_IMAGE_ALLOWANCE = 1024**3
"""An upper bound for public.ecr.aws/lambda/python (about 0.6 GB uncompressed)."""
SET_BUDGET = 1024**3
"""This project's budget for the dependency set: a set over 1 GiB has picked up something it should not have."""
GLIBC_MINOR = 34
"""Amazon Linux 2023, the OS of the Python 3.12+ Lambda base images, has glibc 2.34: manylinux_2_34 wheels and older."""
AWSLAMBDARIC = "awslambdaric==4.2.2"
"""The runtime interface client; the Lambda Python base image brings its own, the test installs this one."""
API_KEY = "secret-key"  # the key tests/events/api_post_analysis.json carries
PREFIX = "xpcompute-dev-"


def dockerfile_python() -> str:
    """The Python version the image is built on: the Dockerfile's ``ARG PYTHON_VERSION``."""
    found = re.search(r"^ARG PYTHON_VERSION=(\d+\.\d+)\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, "the Dockerfile must declare ARG PYTHON_VERSION=X.Y (the Lambda base image's tag)"
    return found.group(1)


def local_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def platform_args() -> list[str]:
    """pip's ``--platform`` list for the image's glibc: pip does not widen one manylinux tag to the older ones."""
    args = []
    for minor in range(GLIBC_MINOR, 4, -1):
        args += ["--platform", f"manylinux_2_{minor}_x86_64"]
    return [*args, "--platform", "manylinux2014_x86_64"]


def requirement_names(lines: list[str]) -> set[str]:
    return {canonical(re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0]) for line in lines
            if line.strip() and not line.lstrip().startswith("#")}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class InstalledSet:
    """A cached pip ``--target`` folder: the dependency set, and (for running handlers) awslambdaric beside it."""

    deps: Path
    ric: Path | None
    seconds: float  # what the install took in this session (0 when the cache had it)

    def size(self) -> int:
        return folder_size(self.deps)

    def distributions(self) -> set[str]:
        return {canonical(p.name.split("-")[0]) for p in self.deps.glob("*.dist-info")}


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _pip(args: list[str], what: str) -> None:
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"pip could not install {what} (exit {done.returncode}); the image build would fail the same "
                    f"way:\n{done.stderr[-4000:]}")


def install_set(python: str, with_ric: bool) -> InstalledSet:
    """Install the image's dependency set for ``python`` into a cached folder, as the Dockerfile does."""
    key_text = "\n".join([REQUIREMENTS.read_text(), python, *platform_args(), AWSLAMBDARIC if with_ric else ""])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    final = CACHE / f"py{python}-{key}"
    if (final / "complete").exists():
        return InstalledSet(final / "deps", final / "ric" if with_ric else None, 0.0)
    started = time.perf_counter()
    work = CACHE / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _pip(["--target", str(work / "deps"), "--only-binary=:all:", "--implementation", "cp", "--python-version",
              python, *platform_args(), "-r", str(REQUIREMENTS)], f"{REQUIREMENTS.name} for Python {python}")
        if with_ric:
            _pip(["--target", str(work / "ric"), "--only-binary=:all:", AWSLAMBDARIC], AWSLAMBDARIC)
        (work / "complete").write_text(key_text)
        try:
            work.rename(final)
        except OSError:  # another session finished the same folder first; theirs is as good
            shutil.rmtree(work, ignore_errors=True)
        for stale in CACHE.glob(f"py{python}-*"):  # sets for older requirements: 600 MB each, never used again
            if stale != final and (stale / "complete").exists():
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return InstalledSet(final / "deps", final / "ric" if with_ric else None, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------- the set size


def test_image_dependency_set_fits_the_container_limit_and_holds_no_dev_package() -> None:
    python = dockerfile_python()
    installed = install_set(python, with_ric=False)
    size = installed.size()
    largest = sorted(((folder_size(p) if p.is_dir() else p.stat().st_size, p.name)
                      for p in installed.deps.iterdir()), reverse=True)[:6]
    print(f"\nimage dependency set for Python {python}: {size / 1e6:.0f} MB unpacked "
          f"(installed in {installed.seconds:.0f} s; largest: "
          + ", ".join(f"{name} {n / 1e6:.0f} MB" for n, name in largest) + ")")

    assert size + BASE_IMAGE_ALLOWANCE < CONTAINER_LIMIT, f"{size / 1e9:.2f} GB of dependencies no longer fit an image"
    assert size < SET_BUDGET, f"the set grew to {size / 1e6:.0f} MB; look for a package that does not belong"
    assert size > ZIP_LIMIT, (
        f"the set is {size / 1e6:.0f} MB, under Lambda's 250 MB zip limit: a zip with a layer would fit again, "
        "so serverless.yml's and the Dockerfile's reason for an image no longer holds"
    )

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = requirement_names(REQUIREMENTS.read_text().splitlines())
    dev_only = requirement_names(project["optional-dependencies"]["dev"]) - runtime
    assert dev_only, "pyproject's dev extra should name test packages the image must not carry"
    leaked = installed.distributions() & dev_only
    assert not leaked, f"dev or test packages in the image's dependency set: {sorted(leaked)}"
    # every package the library needs at run time is in the set (the handlers' imports are checked below)
    assert requirement_names(project["dependencies"]) <= runtime, "pyproject dependencies missing from the image"


# ------------------------------------------------------------------------------------------ the Runtime API server


@dataclass
class Invocation:
    """One event handed to a function and what the function posted back."""

    request_id: str
    body: bytes
    done: threading.Event = field(default_factory=threading.Event)
    route: str = ""  # "response" or "error"
    payload: bytes = b""
    error_type: str = ""

    def json(self) -> Any:
        return json.loads(self.payload)


class RuntimeAPI:
    """The Lambda Runtime API on 127.0.0.1, for one function: what Lambda's service side serves to awslambdaric.

    ``GET /2018-06-01/runtime/invocation/next`` blocks until an event is queued, then returns it with the
    ``Lambda-Runtime-*`` headers; the client posts the result to ``/invocation/{id}/response`` or
    ``/invocation/{id}/error``, or, when the handler cannot even load, to ``/init/error``.
    """

    BASE = "/2018-06-01/runtime"

    def __init__(self, function: str) -> None:
        self.function = function
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.by_id: dict[str, Invocation] = {}
        self.init_error: dict[str, Any] | None = None
        self.init_error_type = ""
        self.closing = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"runtime-api-{function}", daemon=True)
        self.thread.start()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # awslambdaric keeps its connection open between calls

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the function was stopped mid-poll
                    self.close_connection = True

            def do_GET(self) -> None:
                if self.path != f"{api.BASE}/invocation/next":
                    self._reply(404, b'{"errorMessage": "unknown route"}')
                    return
                while True:
                    try:
                        inv = api.pending.get(timeout=0.2)
                        break
                    except queue.Empty:
                        if api.closing.is_set():
                            self._reply(500, b'{"errorMessage": "runtime API closing"}')
                            return
                self._reply(200, inv.body, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 300_000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        f"arn:aws:lambda:us-east-1:123456789012:function:{PREFIX}{api.function}",
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
                if self.path == f"{api.BASE}/init/error":
                    api.init_error, api.init_error_type = json.loads(body or b"{}"), error_type
                    self._reply(202, b'{"status": "OK"}')
                    return
                match = re.fullmatch(rf"{api.BASE}/invocation/([^/]+)/(response|error)", self.path)
                inv = api.by_id.get(match.group(1)) if match else None
                if match is None or inv is None:
                    self._reply(404, b'{"errorMessage": "unknown invocation"}')
                    return
                inv.route, inv.payload, inv.error_type = match.group(2), body, error_type
                inv.done.set()
                self._reply(202, b'{"status": "OK"}')

            def log_message(self, *args: object) -> None:
                return

        return Handler

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


class LambdaFunction:
    """One function: awslambdaric running its handler in a fresh interpreter that sees only the image's folders."""

    def __init__(self, name: str, handler: str, pythonpath: list[Path], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.api = RuntimeAPI(name)
        self.log = log
        self.count = 0
        task_root = pythonpath[0]
        full_env = {
            **env,
            "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": f"{PREFIX}{name}",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "_HANDLER": handler,
        }
        with log.open("wb") as out:
            # -S: no site-packages, so nothing from the project's .venv (dev packages included) can satisfy an import
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "awslambdaric", handler], cwd=task_root, env=full_env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def invoke(self, event: Any, timeout: float = 120.0) -> Invocation:
        """Hand ``event`` to the function and wait for what it posts back (as a synchronous Invoke would)."""
        self.count += 1
        inv = Invocation(f"{self.name}-{self.count}-{uuid.uuid4().hex[:8]}", json.dumps(event).encode())
        self.api.by_id[inv.request_id] = inv
        self.api.pending.put(inv)
        deadline = time.monotonic() + timeout
        while not inv.done.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"function {self.name} gave no result for {inv.request_id} "
                    f"(exit code {self.proc.poll()}, init error {self.api.init_error}); its log:\n"
                    + self.log.read_text(errors="replace")[-4000:]
                )
        return inv

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        self.api.close()


# ------------------------------------------------------------------------------------- the handlers in the image


def stage_task_root(target: Path) -> tuple[Path, dict[str, str]]:
    """What the image puts in ``LAMBDA_TASK_ROOT`` besides the dependencies: the package and the handlers.

    The package is this checkout's (the code under test), with the C++ module this checkout built; without one,
    the NumPy reference backend runs the same maths (``XPCOMPUTE_NATIVE=reference``).
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "shared" / "xpcompute", target / "xpcompute", ignore=ignore)
    shutil.copytree(ROOT / "functions", target / "functions", ignore=ignore)
    extra: dict[str, str] = {}
    spec = importlib.util.find_spec("xpcompute._core")
    if spec is not None and spec.origin and Path(spec.origin).is_file():
        shutil.copy2(spec.origin, target / "xpcompute" / Path(spec.origin).name)
    else:
        extra["XPCOMPUTE_NATIVE"] = "reference"
    return target, extra


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def api_get(path: str) -> dict[str, Any]:
    """A REST API (v1) GET event for ``path``, made from the recorded POST event."""
    ev = load_event("api_post_analysis.json")
    ev.update(path=path, httpMethod="GET", body=None, pathParameters={"proxy": path.lstrip("/")})
    ev["requestContext"].update(httpMethod="GET", path="/dev" + path)
    return ev


@dataclass
class ImageFunctions:
    """The four functions running from the image's folders, and what they were started with."""

    functions: dict[str, LambdaFunction]
    recorder: Recorder
    store: S3ObjectStore
    pythonpath: list[Path]
    env: dict[str, str]


@pytest.fixture(scope="module")
def image_functions(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageFunctions]:
    import boto3

    installed = install_set(local_python(), with_ric=True)
    assert installed.ric is not None
    if local_python() != dockerfile_python():
        print(f"\nhandlers run on Python {local_python()} with the same requirements (the image has "
              f"{dockerfile_python()}, which this machine lacks); install took {installed.seconds:.0f} s")
    work = tmp_path_factory.mktemp("lambda-image")
    task_root, native = stage_task_root(work / "task")
    bucket = f"xp-image-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = S3ObjectStore(bucket, "xp", endpoint_url=moto_endpoint)
    recorder = Recorder()  # Lambda's Invoke API: the dispatcher's asynchronous invocations land here
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(work), "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        # what serverless.yml's provider.environment sets, pointed at moto and the recorder
        "XPCOMPUTE_MODE": "serverless", "XPCOMPUTE_AUTH": "on", "XPCOMPUTE_API_KEYS": API_KEY,
        "XPCOMPUTE_STATE": "dynamodb", "XPCOMPUTE_DYNAMODB_TABLE": f"{bucket}-state",
        "XPCOMPUTE_DYNAMODB_ENDPOINT": moto_endpoint, "XPCOMPUTE_DYNAMODB_CREATE": "1",
        "XPCOMPUTE_OBJECTS": f"s3://{bucket}/xp", "XPCOMPUTE_S3_ENDPOINT": moto_endpoint,
        "XPCOMPUTE_DISPATCH": "lambda", "XPCOMPUTE_LAMBDA_ENDPOINT": recorder.url,
        "XPCOMPUTE_FUNCTION_PREFIX": PREFIX,
        # "arrow": the duckdb engine reads a registered experiment, and this one is a bare published table
        "XPCOMPUTE_SLICE_ENGINE": "arrow",
        **native,
    }
    path = [task_root, installed.deps, installed.ric]
    functions = {
        name: LambdaFunction(name, f"functions/{name}/handler.handler", path, env, work / f"{name}.log")
        for name in ("api", "slice", "fit", "coordinator")
    }
    try:
        yield ImageFunctions(functions, recorder, store, path, env)
    finally:
        for fn in functions.values():
            fn.stop()
        recorder.close()


def test_handlers_run_an_analysis_through_awslambdaric_from_the_image_set(image_functions: ImageFunctions) -> None:
    functions, recorder, store = image_functions.functions, image_functions.recorder, image_functions.store
    table = analysis_table(2000)
    publish(store, "exp", table)
    started = time.perf_counter()

    health = functions["api"].invoke(load_event("api_get_health_http_api.json"))
    assert health.route == "response", health.payload
    assert health.json()["statusCode"] == 200 and json.loads(health.json()["body"])["mode"] == "serverless"

    created = functions["api"].invoke(load_event("api_post_analysis.json"))
    assert created.route == "response" and created.json()["statusCode"] == 202, created.payload
    aid = json.loads(created.json()["body"])["analysis_id"]

    # Lambda's part: deliver each asynchronous Invoke the functions made to the function it names
    answers: dict[str, list[dict[str, Any]]] = {"slice": [], "fit": [], "coordinator": []}
    while recorder.requests:
        req = recorder.requests.pop(0)
        name = str(req["path"]).split(f"/functions/{PREFIX}")[1].split("/")[0]
        assert req["headers"].get("X-Amz-Invocation-Type") == "Event"  # type: ignore[attr-defined]
        inv = functions[name].invoke(json.loads(req["body"]))  # type: ignore[arg-type]
        assert inv.route == "response", f"{name} failed: {inv.error_type} {inv.payload[:2000]!r}"
        answers[name].append(inv.json())
    assert len(answers["slice"]) == 2 and len(answers["fit"]) == 4 and len(answers["coordinator"]) == 6
    assert all(a["status"] == "succeeded" for a in answers["slice"] + answers["fit"]), answers
    assert all(a == {"coordinated": "job_finished"} for a in answers["coordinator"])

    status = json.loads(functions["api"].invoke(api_get(f"/analyses/{aid}")).json()["body"])
    assert status["state"] == "SUCCEEDED" and status["progress"]["succeeded"] == 6, status
    card = json.loads(functions["api"].invoke(api_get(f"/analyses/{aid}/results")).json()["body"])
    assert len(card["records"]) == 4
    (ref,) = reference_records(table, SliceFilter.where(country="US"), "hours", "ttest")
    got = next(r for r in card["records"] if r["slice"] == "country=US" and r["metric"] == "hours")
    assert got["effect"] == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]
    assert got["p_value"] == pytest.approx(ref.p_value, rel=1e-9)  # type: ignore[attr-defined]
    print(f"\nanalysis through awslambdaric: {time.perf_counter() - started:.1f} s, "
          f"{sum(f.count for f in functions.values())} invocations")


def test_other_events_and_a_raised_error_cross_the_runtime_api(image_functions: ImageFunctions,
                                                                tmp_path: Path) -> None:
    functions, recorder = image_functions.functions, image_functions.recorder
    queued = functions["fit"].invoke(load_event("sqs_run_jobs.json"))  # an SQS batch whose jobs are unknown
    assert queued.route == "response" and queued.json()["batchItemFailures"] == []
    ok = functions["coordinator"].invoke(load_event("eventbridge_tick.json"))
    assert ok.route == "response" and ok.json() == {"coordinated": "tick"}
    assert recorder.requests == []

    # a handler that raises one of the library's typed errors: Lambda reports it on the error route, by type
    (tmp_path / "raising").mkdir()
    (tmp_path / "raising" / "handler.py").write_text(
        "from xpcompute.errors import InputError\n\n\n"
        "def handler(event, context):\n    raise InputError('refused: ' + event['why'])\n"
    )
    fn = LambdaFunction("raising", "raising/handler.handler", [tmp_path, *image_functions.pythonpath],
                        image_functions.env, tmp_path / "log")
    try:
        bad = fn.invoke({"why": "no such metric"})
        assert bad.route == "error", bad.payload
        assert bad.json()["errorType"] == "InputError" and bad.json()["errorMessage"] == "refused: no such metric"
        assert fn.invoke({"why": "again"}).route == "error"
        assert fn.proc.poll() is None, "a failed invocation must not end the function's process"
    finally:
        fn.stop()


def test_a_handler_that_cannot_import_reports_an_init_error(tmp_path: Path) -> None:
    installed = install_set(local_python(), with_ric=True)
    assert installed.ric is not None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "handler.py").write_text("import a_package_the_image_lacks\n")
    fn = LambdaFunction("broken", "broken/handler.handler", [tmp_path, installed.deps, installed.ric],
                        {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}, tmp_path / "log")
    try:
        assert fn.proc.wait(timeout=60) != 0
        assert fn.api.init_error is not None, fn.log.read_text()
        assert fn.api.init_error_type == "Runtime.ImportModuleError"
        assert "a_package_the_image_lacks" in fn.api.init_error["errorMessage"]
    finally:
        fn.stop()
