"""Run the real auditrail collector (bin/otelcol-auditrail, built by `make collector`) from tests.

:class:`Collector` starts the binary with the repository's own config files (collector-config/), every
address on a free 127.0.0.1 port and every secret in its environment, waits for health_check, and can
stop it cleanly or SIGKILL it. :func:`audit_request` builds OTLP audit records as auditrail emits them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uuid_utils
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from processes import cpu_seconds, free_port, terminate, wait_for_http

REPO = Path(__file__).resolve().parent.parent
BINARY = REPO / "bin" / "otelcol-auditrail"
CONFIG_DIR = REPO / "collector-config"
SHARED_CONFIGS = [CONFIG_DIR / "pipelines.yaml", CONFIG_DIR / "rules.yaml"]
CLICKHOUSE_CONFIGS = [*SHARED_CONFIGS, CONFIG_DIR / "otelcol.yaml"]
EMBEDDED_CONFIGS = [*SHARED_CONFIGS, CONFIG_DIR / "otelcol-embedded.yaml"]
TOKEN = "test-collector-token-3f1c9a"


def require_binary() -> Path:
    """The built collector; skip only when Go is absent (then it cannot be built here)."""
    if BINARY.is_file() and os.access(BINARY, os.X_OK):
        return BINARY
    if shutil.which("go") is None:
        pytest.skip("Go is not installed, so the collector (bin/otelcol-auditrail) cannot be built here; "
                    "install Go and run `make collector` to run the collector tests")
    pytest.fail("bin/otelcol-auditrail is missing: run `make collector` first (`make test` does)")


def closed_endpoint() -> str:
    """host:port on loopback where nothing listens: a destination that is down."""
    return f"127.0.0.1:{free_port()}"


@dataclass
class Collector:
    """One collector process: configs, environment, ports, queue directory."""

    workdir: Path
    env: dict[str, str]
    configs: list[Path] = field(default_factory=lambda: list(CLICKHOUSE_CONFIGS))
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def queue_dir(self) -> Path:
        return self.workdir / "queue"

    @property
    def log_path(self) -> Path:
        return self.workdir / "collector.log"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def full_env(self) -> dict[str, str]:
        """The process environment: PATH/HOME plus the collector's variables (secrets included)."""
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG", "GOGC", "GOMEMLIMIT")}
        return {
            **base,
            "AUDITRAIL_COLLECTOR_TOKEN": TOKEN,
            "AUDITRAIL_COLLECTOR_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "AUDITRAIL_COLLECTOR_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "AUDITRAIL_COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "AUDITRAIL_COLLECTOR_METRICS_PORT": str(self.metrics_port),
            "AUDITRAIL_COLLECTOR_QUEUE_DIR": str(self.queue_dir),
            **self.env,
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the binary and wait until health_check reports it ready."""
        binary = require_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [str(binary)]
        for path in self.configs:
            args += ["--config", str(path)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts + 1} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, env=self.full_env(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, start_new_session=True)
        self.starts += 1
        wait_for_http(f"http://127.0.0.1:{self.health_port}/", self.proc, "the collector", timeout,
                      details=self.log_tail)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what survives is what the persistent queue wrote."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        terminate(self.proc, timeout)
        self.proc = None

    def metrics(self) -> dict[str, float]:
        """The collector's own Prometheus metrics, summed per name and exporter: {"name{exporter}": value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name, _, labels = name_labels.partition("{")
            exporter = ""
            for part in labels.rstrip("}").split(","):
                key, _, val = part.partition("=")
                if key == "exporter":
                    exporter = val.strip('"')
            key = f"{name}{{{exporter}}}" if exporter else name
            out[key] = out.get(key, 0.0) + float(value)
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the collector process has used so far."""
        return cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def send(self, request: ExportLogsServiceRequest, token: str | None = TOKEN, timeout: float = 10.0) -> int:
        """POST one OTLP/HTTP protobuf request to /v1/logs; return the HTTP status."""
        headers = {"Content-Type": "application/x-protobuf"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"{self.otlp_http}/v1/logs", data=request.SerializeToString(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class AuditEvent:
    """The fields of one audit record that the routing rules look at."""

    event_name: str
    risk: str = "low"
    tenant: str = "acme"
    actor: str = "alice@acme.io"
    event_id: str = field(default_factory=lambda: str(uuid_utils.uuid7()))
    time_unix_nano: int = field(default_factory=time.time_ns)
    payload: str = '{"before":{"v":1},"after":{"v":2}}'


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def audit_request(events: Iterable[AuditEvent], service: str = "assistant-admin") -> ExportLogsServiceRequest:
    """One ExportLogsServiceRequest carrying the events as auditrail's instrumentation emits them."""
    records = []
    for ev in events:
        warn = ev.risk in ("high", "critical")
        records.append(LogRecord(
            time_unix_nano=ev.time_unix_nano,
            observed_time_unix_nano=ev.time_unix_nano,
            severity_number=13 if warn else 9,
            severity_text="WARN" if warn else "INFO",
            event_name=ev.event_name,
            body=AnyValue(string_value=f"{ev.event_name} by {ev.actor} in {ev.tenant}"),
            attributes=[
                _kv("audit.event_id", ev.event_id),
                _kv("audit.tenant_id", ev.tenant),
                _kv("enduser.id", ev.actor),
                _kv("audit.actor.type", "user"),
                _kv("audit.risk", ev.risk),
                _kv("audit.outcome", "success"),
                _kv("audit.payload", ev.payload),
            ],
        ))
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[_kv("service.name", service)]),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name="auditrail"), log_records=records)],
    )])


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll predicate() until it returns a truthy value; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_for_at_least(fetch, count: int, timeout: float = 60.0, what: str = "items"):
    """Poll fetch() until its result holds at least count items; return that result."""
    holder: list = []

    def enough():
        holder[:] = [fetch()]
        return len(holder[0]) >= count

    wait_until(enough, timeout=timeout, what=f"{count} {what}")
    return holder[0]


def collector_env(**overrides: str) -> dict[str, str]:
    """Destination variables pointing at loopback ports where nothing listens, overridden per test."""
    env: Mapping[str, str] = {
        "AUDITRAIL_CLICKHOUSE_ENDPOINT": f"http://{closed_endpoint()}",
        "AUDITRAIL_CLICKHOUSE_COMPRESS": "none",
        "AUDITRAIL_GCP_PROJECT": "auditrail-test",
        "AUDITRAIL_GCP_LOGGING_ENDPOINT": closed_endpoint(),
        "AUDITRAIL_GCP_LOGGING_INSECURE": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AUDITRAIL_CLOUDWATCH_ENDPOINT": f"http://{closed_endpoint()}",
        "AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL": f"http://{closed_endpoint()}/v1/spaces/TEST/messages?key=k&token=t",
        "AUDITRAIL_GOOGLE_CHAT_ALLOW_HTTP": "true",
        "AUDITRAIL_STORE_ENDPOINT": f"http://{closed_endpoint()}",
        "AUDITRAIL_STORE_TOKEN": "unused",
    }
    return {**env, **overrides}


def exporter_only_config(sending_queue: str, telemetry_off: bool = False) -> str:
    """A collector that only does otlp receiver -> clickhouse exporter into auditrail.otel_logs at
    ${env:EXPORTER_CLICKHOUSE_ENDPOINT}; `sending_queue` is the exporter's queue block, e.g. "enabled: false"."""
    telemetry = "  telemetry:\n    metrics:\n      level: none\n" if telemetry_off else ""
    return f"""
extensions:
  health_check:
    endpoint: ${{env:AUDITRAIL_COLLECTOR_HEALTH_ENDPOINT}}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${{env:AUDITRAIL_COLLECTOR_HTTP_ENDPOINT}}
exporters:
  clickhouse:
    endpoint: ${{env:EXPORTER_CLICKHOUSE_ENDPOINT}}
    database: auditrail
    logs_table_name: otel_logs
    create_schema: false
    compress: none
    sending_queue:
      {sending_queue}
service:
  extensions: [health_check]
{telemetry}  pipelines:
    logs:
      receivers: [otlp]
      exporters: [clickhouse]
"""
