"""Where the collector sends copies, run locally on 127.0.0.1 with their real wire protocols.

- :class:`MotoServer`: AWS CloudWatch Logs as moto's server mode implements it (boto3 reads it back).
- :class:`FakeCloudLogging`: a gRPC server for ``google.logging.v2.LoggingServiceV2/WriteLogEntries`` whose
  request and response types are google-cloud-logging's own, so what it records is what Google would get.
- :class:`WebhookRecorder`: an HTTP server that records Google Chat webhook posts.
(ClickHouse is clickhouse_http.py's fixture.)
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from google.cloud.logging_v2.types import WriteLogEntriesRequest, WriteLogEntriesResponse

from processes import free_port, terminate, wait_for_http


class MotoServer:
    """moto in server mode (``python -m moto.server``) on a free loopback port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                           "-p", str(self.port)],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_http(f"{self.url}/moto-api/", self._proc, "the moto server", timeout, any_answer=True,
                      details=lambda: f"see {self.log_path}")

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None

    def logs_client(self):
        """A boto3 CloudWatch Logs client for this server."""
        import boto3

        return boto3.client("logs", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def log_messages(self, group: str, stream: str) -> list[str]:
        """Every message in the stream, oldest first ([] while the group or stream does not exist)."""
        client = self.logs_client()
        try:
            kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
            messages: list[str] = []
            token = None
            while True:
                page = client.get_log_events(**kwargs, **({"nextToken": token} if token else {}))
                messages += [e["message"] for e in page["events"]]
                if not page["events"] or page.get("nextForwardToken") == token:
                    return messages
                token = page["nextForwardToken"]
        except client.exceptions.ResourceNotFoundException:
            return []


class FakeCloudLogging:
    """Cloud Logging's gRPC write API on loopback; records every WriteLogEntriesRequest."""

    SERVICE = "google.logging.v2.LoggingServiceV2"

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[WriteLogEntriesRequest] = []
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.stall = Stall()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write(self, request: WriteLogEntriesRequest, context: grpc.ServicerContext) -> WriteLogEntriesResponse:
        if self.stall.hold():
            context.abort(grpc.StatusCode.UNAVAILABLE, "stalled: not written")
        with self._lock:
            self.requests.append(request)
            self.metadata.append(dict(context.invocation_metadata()))
        return WriteLogEntriesResponse()

    def start(self) -> None:
        handler = grpc.method_handlers_generic_handler(self.SERVICE, {
            "WriteLogEntries": grpc.unary_unary_rpc_method_handler(
                self._write,
                request_deserializer=WriteLogEntriesRequest.deserialize,
                response_serializer=WriteLogEntriesResponse.serialize,
            ),
        })
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers((handler,))
        self._server.add_insecure_port(self.endpoint)
        self._server.start()

    def stop(self) -> None:
        self.stall.release()
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None

    def entries(self) -> list[tuple[str, object]]:
        """(log name, LogEntry) for every entry received; an entry's own log_name wins over the request's."""
        with self._lock:
            return [(e.log_name or r.log_name, e) for r in self.requests for e in r.entries]


class Stall:
    """A destination that hangs: while on, requests wait unanswered; when released they fail, unrecorded.

    So a request that was in flight when the collector stopped counts as not delivered: only a resend counts.
    """

    def __init__(self) -> None:
        self._on = False
        self._released = threading.Event()
        self._released.set()
        self.held = 0

    def on(self) -> None:
        self._released.clear()
        self._on = True

    def release(self) -> None:
        self._on = False
        self._released.set()

    def hold(self) -> bool:
        """Wait while stalled; True when this request was held (then it must fail unrecorded)."""
        if not self._on:
            return False
        self.held += 1
        self._released.wait()
        return True


class WebhookRecorder:
    """Records the JSON bodies POSTed to it (a Google Chat incoming webhook's stand-in)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.paths: list[str] = []
        self.stall = Stall()
        lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if recorder.stall.hold():
                    self.send_error(503, "stalled: not recorded")
                    return
                with lock:
                    recorder.posts.append(json.loads(body or b"{}"))
                    recorder.paths.append(self.path)
                data = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a stalled request whose client gave up: nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/spaces/TEST/messages?key=test-key&token=test-token"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stall.release()
        self._server.shutdown()
        self._server.server_close()
