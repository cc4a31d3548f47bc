"""Start and stop the local emulators on 127.0.0.1: moto's server (S3, DynamoDB, SQS) and ``npx osls offline``.

With ``--localstack``, LocalStack (``localstack-core``, host mode, no Docker) serves S3 and SQS instead, and moto
keeps DynamoDB (LocalStack's DynamoDB needs Docker). LocalStack lives in its own environment,
``build/localstack-venv``, installed on first use from ``infra/emulators/localstack-requirements.txt``: its pins
would otherwise move the project's boto3 and pydantic.

Each start refuses a port that is already taken (saying which and by what to
look for), records the process id of what it started under ``--run-dir``,
and waits until the service answers. ``stop`` ends only the processes whose
ids it recorded, and only if they are still the command it started.

    python infra/emulators/emulators.py start [--localstack] [--moto-port 5000] [--localstack-port 4566]
                                              [--http-port 3000] [--lambda-port 3002]
    python infra/emulators/emulators.py env      # the XPCOMPUTE_* variables pointing at them
    python infra/emulators/emulators.py stop
    python infra/emulators/emulators.py install-localstack
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LOCALSTACK_REQUIREMENTS = ROOT / "infra" / "emulators" / "localstack-requirements.txt"
LOCALSTACK_VENV = ROOT / "build" / "localstack-venv"


class EmulatorError(RuntimeError):
    pass


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def require_free(port: int, what: str) -> None:
    if not port_free(port):
        raise EmulatorError(
            f"port {port} on {HOST} is already taken, so {what} cannot start there; stop whatever listens on it "
            f"(`ss -ltnp 'sport = :{port}'`) or pick another port"
        )


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise EmulatorError(f"{url} did not come up: the process exited with {proc.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise EmulatorError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class Emulators:
    """What was started, so ``stop`` ends exactly that."""

    run_dir: str
    moto_port: int = 0
    localstack_port: int = 0
    http_port: int = 0
    lambda_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    bucket: str = "xpcompute-dev-data"  # the names serverless.yml gives the dev stage
    table: str = "xpcompute-dev-state"
    queue_url: str = ""

    @property
    def moto_url(self) -> str:
        return f"http://{HOST}:{self.moto_port}"

    @property
    def localstack_url(self) -> str:
        return f"http://{HOST}:{self.localstack_port}"

    @property
    def objects_url(self) -> str:
        """Where S3 and SQS are served: LocalStack when it runs, else moto."""
        return self.localstack_url if self.localstack_port else self.moto_url

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/dev"

    def env(self) -> dict[str, str]:
        """The configuration that points the service at these emulators."""
        out = {
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if self.moto_port:
            out.update({
                "XPCOMPUTE_DYNAMODB_ENDPOINT": self.moto_url,
                "XPCOMPUTE_DYNAMODB_TABLE": self.table,
                "XPCOMPUTE_S3_ENDPOINT": self.objects_url,
                "XPCOMPUTE_SQS_ENDPOINT": self.objects_url,
                "XPCOMPUTE_OBJECTS": f"s3://{self.bucket}/xp",
                "XPCOMPUTE_SQS_QUEUE_URL": self.queue_url,
            })
        if self.lambda_port:
            out["XPCOMPUTE_LAMBDA_ENDPOINT"] = f"http://{HOST}:{self.lambda_port}"
        return out

    def save(self) -> None:
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.run_dir) / "emulators.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: str) -> Emulators:
        path = Path(run_dir) / "emulators.json"
        if not path.exists():
            return cls(run_dir=run_dir)
        return cls(**json.loads(path.read_text()))


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)


def start_moto(emu: Emulators, port: int, create: bool = True) -> None:
    """moto's server on ``port``; ``create``: make the bucket, table and queues now (else call ``bootstrap``)."""
    require_free(port, "moto's server")
    moto = Path(sys.executable).parent / "moto_server"
    cmd = [str(moto) if moto.exists() else "moto_server", "-H", HOST, "-p", str(port)]
    log = Path(emu.run_dir) / "moto.log"
    proc = _spawn(cmd, log, dict(os.environ))
    emu.moto_port = port
    emu.pids["moto"] = proc.pid
    emu.save()
    wait_http(f"http://{HOST}:{port}/moto-api/", 20, proc, log)
    if create:
        bootstrap(emu)
        emu.save()


def _requirements_hash() -> str:
    return hashlib.sha256(LOCALSTACK_REQUIREMENTS.read_bytes()).hexdigest()


def ensure_localstack(venv: Path = LOCALSTACK_VENV, timeout: float = 900.0) -> Path:
    """LocalStack's own environment, installed once per version of its requirements; returns its python.

    A lock file serializes concurrent installs (two test sessions), and a stamp with the requirements' hash says
    the environment is complete, so an interrupted install is redone rather than half-used.
    """
    python = venv / "bin" / "python"
    stamp = venv / ".xpcompute-requirements-sha256"
    want = _requirements_hash()
    if stamp.exists() and stamp.read_text().strip() == want and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text().strip() == want and python.exists():
            return python
        stamp.unlink(missing_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [[base, "-m", "venv", "--clear", str(venv)],
                 [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r", str(LOCALSTACK_REQUIREMENTS)]]
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
            if done.returncode != 0:
                raise EmulatorError(f"installing LocalStack failed at `{' '.join(cmd[:4])} ...` (exit "
                                    f"{done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")
        stamp.write_text(want)
    return python


def start_localstack(emu: Emulators, port: int, timeout: float = 60.0) -> None:
    """LocalStack in host mode on ``port`` with S3 and SQS only (``localstack.runtime.main``, as its image runs it).

    Its files go under the run folder (``FILESYSTEM_ROOT``; ``OVERRIDE_IN_DOCKER=0`` because this machine looks like
    a container to it and it would write to /var/lib/localstack); no DNS server, no certificate download, no
    analytics (none of which is reachable here). SQS queue URLs are path-style on 127.0.0.1, so clients need no DNS.
    """
    require_free(port, "LocalStack")
    python = ensure_localstack()
    run_dir = Path(emu.run_dir)
    env = dict(os.environ)
    env.update({
        "GATEWAY_LISTEN": f"{HOST}:{port}", "LOCALSTACK_HOST": f"{HOST}:{port}", "SERVICES": "s3,sqs",
        "OVERRIDE_IN_DOCKER": "0", "FILESYSTEM_ROOT": str(run_dir / "localstack-fs"), "DNS_ADDRESS": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1", "DISABLE_EVENTS": "1", "SQS_ENDPOINT_STRATEGY": "path",
    })
    log = run_dir / "localstack.log"
    proc = _spawn([str(python), "-m", "localstack.runtime.main"], log, env)
    emu.localstack_port = port
    emu.pids["localstack"] = proc.pid
    emu.save()
    wait_http(f"http://{HOST}:{port}/_localstack/health", timeout, proc, log)


def bootstrap(emu: Emulators) -> None:
    """Create the bucket, the state table and the queues serverless.yml declares (emulators start empty).

    The table is always on moto; the bucket and the queues on LocalStack when it runs.
    """
    import boto3

    env = emu.env()
    kw = {"endpoint_url": emu.moto_url, "region_name": "us-east-1", "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
          "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    objects_kw = {**kw, "endpoint_url": emu.objects_url}  # S3 and SQS: LocalStack when it runs
    boto3.client("s3", **objects_kw).create_bucket(Bucket=emu.bucket)
    sys.path.insert(0, str(ROOT / "shared"))
    from xpcompute.coordinator.state.dynamodb_store import table_definition

    ddb = boto3.client("dynamodb", **kw)
    if emu.table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(**table_definition(emu.table))
    sqs = boto3.client("sqs", **objects_kw)
    dlq = sqs.create_queue(QueueName="xpcompute-dev-jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    emu.queue_url = sqs.create_queue(
        QueueName="xpcompute-dev-jobs",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
    )["QueueUrl"]


def start_offline(emu: Emulators, http_port: int, lambda_port: int, extra_env: dict[str, str] | None = None,
                  timeout: float = 60.0) -> None:
    """``npx osls offline start`` on 127.0.0.1 with the service pointed at moto (or whatever ``extra_env`` says)."""
    osls = ROOT / "node_modules" / ".bin" / "osls"
    if not osls.exists():
        raise EmulatorError("node_modules/.bin/osls is missing: run `npm install` in the repository root first")
    ws_port, alb_port = free_port(), free_port()
    for port, what in ((http_port, "serverless-offline (HTTP)"), (lambda_port, "serverless-offline (Lambda)")):
        require_free(port, what)
    venv = ROOT / ".venv"
    env = dict(os.environ)
    env.update(emu.env())
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "shared"), env.get("PYTHONPATH", "")) if p),
        "XPCOMPUTE_LAMBDA_ENDPOINT": f"http://{HOST}:{lambda_port}",
        "XPCOMPUTE_DISPATCH": env.get("XPCOMPUTE_DISPATCH", "lambda"),
        # serverless-offline cannot run container images: it runs the same handlers from this checkout
        "XPCOMPUTE_PACKAGING": "handler",
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
    })
    if venv.exists():
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra_env or {})
    cmd = [str(osls), "offline", "start", "--host", HOST, "--httpPort", str(http_port), "--lambdaPort",
           str(lambda_port), "--websocketPort", str(ws_port), "--albPort", str(alb_port)]
    log = Path(emu.run_dir) / "offline.log"
    proc = _spawn(cmd, log, env)
    emu.http_port, emu.lambda_port = http_port, lambda_port
    emu.pids["offline"] = proc.pid
    emu.save()
    wait_http(f"http://{HOST}:{http_port}/dev/healthz", timeout, proc, log)


def _is_ours(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def stop(emu: Emulators, timeout: float = 10.0) -> list[str]:
    """End the process groups this tool started (and nothing else); returns what was stopped."""
    stopped = []
    markers = {"moto": "moto_server", "offline": "offline", "localstack": "localstack.runtime.main"}
    for name, pid in list(emu.pids.items()):
        if _is_ours(pid, markers.get(name, name)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _is_ours(pid, markers.get(name, name)):
                time.sleep(0.1)
            if _is_ours(pid, markers.get(name, name)):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        del emu.pids[name]
    emu.save()
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "env", "start-moto", "install-localstack"])
    parser.add_argument("--localstack", action="store_true",
                        help="S3 and SQS on LocalStack (host mode), DynamoDB on moto")
    parser.add_argument("--localstack-port", type=int, default=4566)
    parser.add_argument("--run-dir", default=str(ROOT / ".xpcompute" / "emulators"))
    parser.add_argument("--moto-port", type=int, default=5000)
    parser.add_argument("--http-port", type=int, default=3000)
    parser.add_argument("--lambda-port", type=int, default=3002)
    args = parser.parse_args(argv)
    emu = Emulators.load(args.run_dir)
    try:
        if args.action in ("start", "start-moto"):
            if emu.pids:
                raise EmulatorError(f"emulators already started from {args.run_dir} ({emu.pids}); run stop first")
            emu = Emulators(run_dir=args.run_dir)
            start_moto(emu, args.moto_port, create=not args.localstack)
            print(f"moto: {emu.moto_url}")
            if args.localstack:
                start_localstack(emu, args.localstack_port)
                bootstrap(emu)
                emu.save()
                print(f"localstack (S3, SQS): {emu.localstack_url}")
            if args.action == "start":
                start_offline(emu, args.http_port, args.lambda_port)
                print(f"api: {emu.api_url}   lambda: http://{HOST}:{emu.lambda_port}")
        elif args.action == "install-localstack":
            print(f"localstack: {ensure_localstack()}")
        elif args.action == "stop":
            print("stopped: " + (", ".join(stop(emu)) or "nothing (none recorded)"))
        else:
            for k, v in emu.env().items():
                print(f"export {k}={v}")
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.action != "stop":
            stop(emu)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
