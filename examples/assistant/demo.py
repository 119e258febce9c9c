"""`make demo`: run assistant-admin under auditrail-instrument, drive the scenario, show the audit events.

    .venv/bin/python examples/assistant/demo.py              # app -> OTLP -> `auditrail serve` (embedded chDB)
    .venv/bin/python examples/assistant/demo.py --collector  # app -> the auditrail collector -> the store,
                                                             # alerts -> a local Google Chat webhook receiver
    .venv/bin/python examples/assistant/demo.py --file       # app -> OTLP JSON lines file (the store service
                                                             # runs as the approval service only)
    .venv/bin/python examples/assistant/demo.py --no-audit   # the same app and story, plain uvicorn

The default run starts the store service on an embedded ClickHouse (chDB) under .auditrail/demo/store,
gives the app an ingest token, and afterwards prints the stored events, their count per type, each
tenant's chain verification, and the CSV/JSON exports it wrote (the JSON one verified offline too).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEMO_DIR = Path(os.environ.get("AUDITRAIL_DEMO_DIR") or REPO / ".auditrail" / "demo").resolve()

sys.path.insert(0, str(HERE))
from scenario import run_scenario  # noqa: E402


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(port: int, *, audit: bool) -> list[str]:
    """uvicorn serving assistant.app on `port`, trusting X-Forwarded-For from 127.0.0.1; audited unless told."""
    uvicorn = [
        "uvicorn", "assistant.app:app", "--host", "127.0.0.1", "--port", str(port),
        "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
    ]
    if not audit:
        return [sys.executable, "-m", *uvicorn]
    # Not resolved: the venv's python is a symlink, and its bin dir is the one holding the launcher.
    launcher = Path(sys.executable).parent / "auditrail-instrument"
    if not launcher.exists():
        sys.exit(f"{launcher} not found: run `make install`, or try --no-audit")
    return [str(launcher), *uvicorn]


def start_server(command: list[str], env: dict[str, str], log_path: Path, cwd: Path = HERE) -> subprocess.Popen[bytes]:
    """Start a process in its own process group (cwd: this example), stdout and stderr to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0,
                 path: str = "/healthz") -> None:
    """Return once GET `path` answers 200; exit with the process's output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the app exited with code {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    sys.exit(f"the app did not become healthy within {timeout:.0f}s:\n{log_path.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the app's process group (launcher and app alike), SIGKILL it after `timeout` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def drive(proc: subprocess.Popen[bytes], base_url: str, log_path: Path, banner: str,
          scenario: Callable[[], Iterable[str]]) -> tuple[int, bool]:
    """Once the app is healthy, run `scenario` printing each step, then stop the app; (steps, clean exit).

    A step that fails stops the app and shows its log before the error goes on.
    """
    steps = 0
    try:
        wait_healthy(base_url, proc, log_path)
        print(banner)
        for steps, step in enumerate(scenario(), 1):
            print(f"  {steps:2}. {step}")
    except BaseException:
        stop_server(proc)
        print(log_path.read_text(errors="replace"), file=sys.stderr)
        raise
    code = stop_server(proc)
    clean = code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    if not clean:
        print(f"the app exited with code {code}:\n{log_path.read_text(errors='replace')}", file=sys.stderr)
    return steps, clean


def count_records(path: Path) -> int:
    """LogRecords in an OTLP JSON lines file (one ExportLogsServiceRequest per line)."""
    count = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            request = json.loads(line)
            for resource_logs in request.get("resourceLogs", []):
                for scope_logs in resource_logs.get("scopeLogs", []):
                    count += len(scope_logs.get("logRecords", []))
    return count


def show_events(path: Path) -> None:
    """Print the captured audit events as a table, then one line naming the file and the count."""
    if not path.exists():
        print(f"no audit events: {path} was not written")
        return
    try:
        from auditrail.exporters.otlp_json import read_records
        from auditrail.show import render_table
    except ImportError as exc:  # the viewer is optional for the demo's own job
        print(f"(cannot render the table: {exc})")
        count = count_records(path)
    else:
        from rich.console import Console

        # Piped (CI logs, `| less`): rich would assume 80 columns; give the table room instead.
        console = Console() if sys.stdout.isatty() else Console(width=200)
        count = render_table((r for r in read_records([path]) if r["event_name"] != "audit.checkpoint"),
                             console=console)
        from auditrail.verify import verify_records

        report = verify_records(read_records([path]))
        chains = ", ".join(f"{c.events} events, seq {c.first_seq}-{c.last_seq}, {c.checkpoints} signed checkpoint(s)"
                           for c in report.chains.values())
        print(f"verify: {'OK' if report.ok else 'PROBLEMS'} ({chains}); `auditrail verify {path}` for details")
    print(f"{count} audit events in {path}")


def app_env(db: Path, **exporter: str) -> dict[str, str]:
    """The app's environment: this example's audit.yaml, its own database, the exporter variables given."""
    env = dict(os.environ)
    env.update(
        AUDITRAIL_CONFIG=str(HERE / "audit.yaml"),
        **exporter,
        ASSISTANT_DB=str(db),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    return env


# --- the store: `auditrail serve` on embedded chDB, and the CLI that talks to it --------------------------

AUDITRAIL = Path(sys.executable).parent / "auditrail"
TENANTS = ("acme", "globex", "*")  # the scenario's tenants ("*": the global kill switch)


def auditrail_cli(*args: str) -> str:
    """Run `auditrail ARGS`; its stdout, or exit with its stderr when it fails."""
    done = subprocess.run([str(AUDITRAIL), *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        sys.exit(f"`auditrail {' '.join(args)}` failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done.stdout


def start_store(store_url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`auditrail serve` on a free loopback port; returns the process and its base URL once healthy."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    proc = start_server([str(AUDITRAIL), "serve", "--host", "127.0.0.1", "--port", str(port), "--url", store_url],
                        dict(os.environ), log_path)
    wait_healthy(base_url, proc, log_path)
    return proc, base_url


class CliApprovals:
    """The scenario's approval desk: each person approves with their own approve token, through the CLI
    (`auditrail approvals approve ID --reason ... --service URL --token TOKEN`)."""

    def __init__(self, base_url: str, tokens: dict[str, str]) -> None:
        self.base_url = base_url
        self.tokens = tokens

    def approve(self, who: str, approval_id: str, reason: str) -> tuple[bool, str]:
        """`who` approves `approval_id`: (granted, the CLI's answer)."""
        done = subprocess.run([str(AUDITRAIL), "approvals", "approve", approval_id, "--reason", reason,
                               "--service", self.base_url, "--token", self.tokens[who]],
                              capture_output=True, text=True, timeout=120)
        said = (done.stdout.strip() or done.stderr.strip()).removeprefix("auditrail approvals approve: ")
        return done.returncode == 0, said


def approval_service(store_url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str, str, CliApprovals]:
    """`auditrail serve` as the approval service (and the store): (process, base URL, the app's token, the desk
    where alice@acme.io and ops@vendor.io approve with approve tokens of their own)."""
    store, base_url = start_store(store_url, log_path)

    def token(scope: str, who: str) -> str:
        return auditrail_cli("tokens", "create", "--tenant", "*", "--scope", scope, "--description", who,
                             "--url", store_url).strip().splitlines()[-1]

    desk = CliApprovals(base_url, {"alice": token("approve", "alice@acme.io"), "ops": token("approve", "ops@vendor.io")})
    return store, base_url, token("ingest", "demo app"), desk


def stored_events(base_url: str, token: str, tenant: str) -> list[dict[str, object]]:
    """A tenant's stored events through the service's export API (NDJSON)."""
    response = httpx.get(f"{base_url}/v1/tenants/{tenant}/events", params={"format": "ndjson"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def wait_stored(base_url: str, token: str, expected: int, timeout: float = 30.0) -> list[dict[str, object]]:
    """The stored audit events of every tenant, once `expected` of them (checkpoints aside) arrived."""
    deadline = time.monotonic() + timeout
    while True:
        events = [e for t in TENANTS for e in stored_events(base_url, token, t)]
        actions = [e for e in events if e["event_type"] != "audit.checkpoint"]
        if len(actions) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


def show_store(base_url: str, read_token: str, store_url: str, expected: int) -> bool:
    """Print what the store holds, verify each tenant, write exports; True when all is clean."""
    from auditrail_store.verify_store import event_record
    from rich.console import Console

    from auditrail.show import render_table

    console = Console() if sys.stdout.isatty() else Console(width=200)
    events = wait_stored(base_url, read_token, expected)
    actions = [e for e in events if e["event_type"] != "audit.checkpoint"]
    print(f"{len(actions)} audit events stored in {store_url} (GET /v1/tenants/{{tenant}}/events):")
    render_table(sorted((event_record(e) for e in actions), key=lambda r: r["time_unix_nano"]), console=console)
    per_type: dict[str, int] = {}
    for e in actions:
        per_type[str(e["event_type"])] = per_type.get(str(e["event_type"]), 0) + 1
    print("events per type: " + ", ".join(f"{t} {n}" for t, n in sorted(per_type.items())))

    clean = len(actions) == expected
    if not clean:
        print(f"expected {expected} audit events in the store, found {len(actions)}")
    exports = DEMO_DIR / "exports"
    exports.mkdir(exist_ok=True)
    for tenant in TENANTS:
        name = "global" if tenant == "*" else tenant
        report = json.loads(auditrail_cli("verify", "--tenant", tenant, "--json", "--url", store_url))
        csv_path, json_path = exports / f"{name}.csv", exports / f"{name}.json"
        auditrail_cli("export", "--tenant", tenant, "--format", "csv", "--out", str(csv_path), "--no-progress",
                      "--url", store_url)
        auditrail_cli("export", "--tenant", tenant, "--format", "json", "--out", str(json_path), "--no-progress",
                      "--url", store_url)
        offline = subprocess.run([str(AUDITRAIL), "verify", str(json_path)], capture_output=True, text=True, timeout=120)
        ok = bool(report.get("ok")) and offline.returncode == 0
        clean = clean and ok
        print(f"tenant {tenant!r}: verify {'OK' if report.get('ok') else 'PROBLEMS'} in the store, "
              f"{'OK' if offline.returncode == 0 else 'PROBLEMS'} offline; exports: {_shown(csv_path)}, "
              f"{_shown(json_path)}")
    print(f"check an export yourself: .venv/bin/auditrail verify {_shown(exports / 'acme.json')}")
    return clean


# --- collector mode: the app -> otelcol-auditrail -> the store; alerts -> a local Google Chat webhook -------

COLLECTOR_BIN = REPO / "bin" / "otelcol-auditrail"
COLLECTOR_CONFIGS = [REPO / "collector-config" / name for name in ("pipelines.yaml", "rules.yaml",
                                                                    "otelcol-embedded.yaml")]


class ChatWebhook:
    """A stand-in for a Google Chat space: records the cards the collector's googlechat exporter posts."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.messages: list[dict[str, object]] = []
        messages = self.messages

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                messages.append({"thread": self.path, "body": json.loads(body or b"{}")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/spaces/DEMO/messages?key=demo&token=demo"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_collector(store_base: str, store_token: str, webhook: ChatWebhook) -> tuple[subprocess.Popen[bytes], str, str]:
    """otelcol-auditrail (embedded variant) on free loopback ports; (process, OTLP/HTTP endpoint, its token)."""
    if not COLLECTOR_BIN.exists():
        sys.exit(f"{COLLECTOR_BIN} not found: run `make collector` (needs Go), or `make demo` without the collector")
    token = secrets.token_urlsafe(24)
    http_port, health_port, grpc_port, metrics_port = (free_port() for _ in range(4))
    closed = f"127.0.0.1:{free_port()}"  # the cloud loggers are not part of the demo: their copies wait in the queue
    env = dict(os.environ)
    env.update(
        AUDITRAIL_COLLECTOR_TOKEN=token, AUDITRAIL_COLLECTOR_HTTP_ENDPOINT=f"127.0.0.1:{http_port}",
        AUDITRAIL_COLLECTOR_GRPC_ENDPOINT=f"127.0.0.1:{grpc_port}",
        AUDITRAIL_COLLECTOR_HEALTH_ENDPOINT=f"127.0.0.1:{health_port}",
        AUDITRAIL_COLLECTOR_METRICS_PORT=str(metrics_port), AUDITRAIL_COLLECTOR_QUEUE_DIR=str(DEMO_DIR / "queue"),
        AUDITRAIL_STORE_ENDPOINT=store_base, AUDITRAIL_STORE_TOKEN=store_token,
        AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=webhook.url, AUDITRAIL_GOOGLE_CHAT_ALLOW_HTTP="true",
        AUDITRAIL_ALERT_LINK_TEMPLATE="http://127.0.0.1:3000/d/auditrail?var-tenant={{.Tenant}}",
        AUDITRAIL_APPROVALS_URL=store_base,  # the approval card's button: this service's /approvals/<id>
        AUDITRAIL_GCP_PROJECT="demo", AUDITRAIL_GCP_LOGGING_ENDPOINT=closed, AUDITRAIL_GCP_LOGGING_INSECURE="true",
        AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
        AUDITRAIL_CLOUDWATCH_ENDPOINT=f"http://{closed}",
    )
    env.setdefault("GOGC", "400")  # the Go runtime settings collector-config/README.md advises (Capacity)
    env.setdefault("GOMEMLIMIT", "512MiB")
    command = [str(COLLECTOR_BIN), *(f"--config={c}" for c in COLLECTOR_CONFIGS)]
    log_path = DEMO_DIR / "collector.log"
    proc = start_server(command, env, log_path)
    wait_healthy(f"http://127.0.0.1:{health_port}", proc, log_path, path="/")
    return proc, f"http://127.0.0.1:{http_port}", token


# The fields every card has; the demo prints the others, which say what happened.
CARD_ROUTINE_FIELDS = {"Tenant", "Actor", "Outcome", "Time (UTC)", "Event ID"}


def show_alerts(webhook: ChatWebhook, timeout: float = 10.0) -> int:
    """Print the Google Chat cards received (waiting up to `timeout` s for the first); their number."""
    deadline = time.monotonic() + timeout
    while not webhook.messages and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the rest of the burst
    print(f"\n{len(webhook.messages)} Google Chat alert(s) posted by the collector:")
    for message in webhook.messages:
        body = message["body"]
        for card in body.get("cardsV2", []) if isinstance(body, dict) else []:
            header = card.get("card", {}).get("header", {})
            print(f"  - {header.get('title', '?')}: {header.get('subtitle', '')}")
            details = [f"{w['decoratedText']['topLabel']}: {html.unescape(w['decoratedText']['text'])}"
                       for section in card.get("card", {}).get("sections", []) for w in section.get("widgets", [])
                       if "decoratedText" in w and w["decoratedText"]["topLabel"] not in CARD_ROUTINE_FIELDS]
            if details:
                print(f"      {' | '.join(details)}".replace("<br>", "; "))
    return len(webhook.messages)


def _shown(path: Path) -> Path:
    """A path relative to the repository when it is inside it."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit code is non-zero when a step fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-audit", action="store_true", help="run plain uvicorn, without auditrail-instrument")
    parser.add_argument("--file", action="store_true", help="events to an OTLP JSON lines file instead of the store")
    parser.add_argument("--collector", action="store_true",
                        help="events through the auditrail collector (bin/otelcol-auditrail) to the store; alerts "
                             "to a local Google Chat webhook receiver")
    args = parser.parse_args(argv)

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    events = DEMO_DIR / "events.jsonl"
    log_path = DEMO_DIR / "app.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    use_store = not args.file and not args.no_audit
    store = store_url = read_token = store_base = collector = webhook = desk = None
    if not args.no_audit:  # the store service is also the approval service (the global kill switch)
        store_url = f"chdb://{DEMO_DIR / 'store'}"
        print(f"starting: auditrail serve --url {store_url}")
        store, store_base, ingest_token, desk = approval_service(store_url, DEMO_DIR / "store.log")
    if use_store:
        read_token = auditrail_cli("tokens", "create", "--tenant", "*", "--scope", "read",
                                   "--description", "demo reader", "--url", store_url).strip().splitlines()[-1]
        endpoint, token = store_base, ingest_token
        if args.collector:
            webhook = ChatWebhook()
            print("starting: otelcol-auditrail (collector-config/otelcol-embedded.yaml) -> the store")
            collector, endpoint, token = start_collector(store_base, ingest_token, webhook)
        env = app_env(DEMO_DIR / "assistant.db", AUDITRAIL_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                      OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                      OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{token}")
    else:
        env = app_env(DEMO_DIR / "assistant.db", AUDITRAIL_EXPORTER=f"file:{events}")
    if desk is not None:
        env.update(AUDITRAIL_APPROVALS_URL=desk.base_url, AUDITRAIL_APPROVALS_TOKEN=ingest_token)
    try:
        code = _run_app(args, env, port, base_url, log_path, events, store_base if use_store else None, read_token,
                        store_url, desk)
        if webhook is not None and show_alerts(webhook) == 0:
            print(f"no alert arrived: see {_shown(DEMO_DIR / 'collector.log')}")
            code = 1
    finally:
        for proc in (collector, store):
            if proc is not None:
                stop_server(proc)
        if webhook is not None:
            webhook.close()
    if code == 0 and use_store and store_url is not None:  # the service stopped: the CLI opens the store
        show_review(store_url)
    return code


def show_review(store_url: str, tenant: str = "acme") -> None:
    """The month's review of one tenant (`auditrail review generate`), named by its PDF."""
    month = time.strftime("%Y-%m", time.gmtime())
    print(f"\nauditrail review generate --month {month} --tenant {tenant}")
    out = auditrail_cli("review", "generate", "--month", month, "--tenant", tenant, "--url", store_url,
                        "--config", str(HERE / "audit.yaml"), "--out", str(DEMO_DIR / "reviews"))
    done = json.loads(out.strip().splitlines()[-1])
    print(f"monthly review of tenant {tenant!r}, {month}: {_shown(Path(done['pdf']))} (and .html); "
          f"sign it: auditrail review sign --month {month} --tenant {tenant} --reviewer NAME --notes TEXT "
          f"--url {store_url} --out {_shown(DEMO_DIR / 'reviews')}")


def _run_app(args: argparse.Namespace, env: dict[str, str], port: int, base_url: str, log_path: Path, events: Path,
             store_base: str | None, read_token: str | None, store_url: str | None,
             desk: CliApprovals | None = None) -> int:
    command = server_command(port, audit=not args.no_audit)
    print(f"starting: {' '.join(command)}  (in {HERE.relative_to(REPO)})")
    proc = start_server(command, env, log_path)
    steps, _ = drive(proc, base_url, log_path, f"assistant-admin is up on {base_url}; running the scenario:",
                     lambda: run_scenario(base_url, desk))
    print()
    if args.no_audit:
        print("auditing was off (--no-audit): no events recorded")
    elif store_base is not None and read_token is not None and store_url is not None:
        return 0 if show_store(store_base, read_token, store_url, steps) else 1
    else:
        show_events(events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
