"""Local OTLP receivers standing in as downstream: OTLP/HTTP (protobuf) and OTLP/gRPC, on 127.0.0.1.

They decode with opentelemetry-proto's own types, so what they record is exactly what was sent.
"""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc


class Received:
    """What a receiver got: decoded requests and the headers they came with."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.headers: list[dict[str, str]] = []

    def add(self, request: logs_service_pb2.ExportLogsServiceRequest, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)

    def log_records(self) -> list[Any]:
        """Every LogRecord received, in arrival order."""
        with self.lock:
            return [lr for req in self.requests for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]


class OTLPHttpReceiver:
    """POST /v1/logs with application/x-protobuf (optionally gzip), answering 200 like a collector."""

    def __init__(self, port: int = 0) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/logs":
                    self.send_error(404)
                    return
                request = logs_service_pb2.ExportLogsServiceRequest()
                request.ParseFromString(body)
                received.add(request, {k.lower(): v for k, v in self.headers.items()})
                payload = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OTLPHttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class OTLPGrpcReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    """The OTLP LogsService over insecure gRPC."""

    def __init__(self) -> None:
        self.received = Received()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's method name
        self.received.add(request, {k: v for k, v in context.invocation_metadata()})
        return logs_service_pb2.ExportLogsServiceResponse()

    def __enter__(self) -> OTLPGrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)
