"""Local OTLP receivers standing in as downstream: OTLP/HTTP (protobuf) and OTLP/gRPC, on 127.0.0.1.

They decode with opentelemetry-proto's own types, so what they record is exactly what was sent.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import ssl
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1 and a client certificate (mTLS)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """Generate a CA and leaf certificates with `cryptography` (Ed25519 is not in every TLS stack: EC P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder("auditrail test CA", "auditrail test CA", ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (builder("127.0.0.1", "auditrail test CA", server_key)
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                          x509.DNSName("localhost")]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (builder("auditrail-app", "auditrail test CA", client_key)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    return TLSFiles(
        ca=write_cert(ca, directory / "ca.pem"),
        server_cert=write_cert(server, directory / "server.pem"),
        server_key=write_key(server_key, directory / "server-key.pem"),
        client_cert=write_cert(client, directory / "client.pem"),
        client_key=write_key(client_key, directory / "client-key.pem"),
    )


class OTLPHttpReceiver:
    """POST /v1/logs with application/x-protobuf (optionally gzip), answering 200 like a collector.

    With `tls`, HTTPS that requires a client certificate signed by the test CA (mTLS).
    """

    def __init__(self, port: int = 0, tls: TLSFiles | None = None) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector's receiver does

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
        scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
            context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            context.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.endpoint = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OTLPHttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class OTLPGrpcReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    """The OTLP LogsService over gRPC; with `tls`, TLS that requires a client certificate (mTLS)."""

    def __init__(self, tls: TLSFiles | None = None) -> None:
        self.received = Received()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self.server)
        if tls is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
            self.endpoint = f"http://127.0.0.1:{port}"
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.server_key.read_bytes(), tls.server_cert.read_bytes())],
                root_certificates=tls.ca.read_bytes(), require_client_auth=True)
            port = self.server.add_secure_port("127.0.0.1:0", credentials)
            self.endpoint = f"https://127.0.0.1:{port}"

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's method name
        self.received.add(request, {k: v for k, v in context.invocation_metadata()})
        return logs_service_pb2.ExportLogsServiceResponse()

    def __enter__(self) -> OTLPGrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)
