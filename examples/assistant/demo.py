"""`make demo`: run assistant-admin under auditrail-instrument, drive the scenario, show the audit events.

    .venv/bin/python examples/assistant/demo.py              # audited, events in .auditrail/demo/
    .venv/bin/python examples/assistant/demo.py --no-audit   # the same app and story, plain uvicorn
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEMO_DIR = REPO / ".auditrail" / "demo"

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


def start_server(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the app in its own process group (cwd: this example), stdout and stderr to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0) -> None:
    """Return once GET /healthz answers 200; exit with the app's output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the app exited with code {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
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


def app_env(events: Path, db: Path) -> dict[str, str]:
    """The app's environment: this example's audit.yaml, events to an OTLP JSON file, its own database."""
    env = dict(os.environ)
    env.update(
        AUDITRAIL_CONFIG=str(HERE / "audit.yaml"),
        AUDITRAIL_EXPORTER=f"file:{events}",
        ASSISTANT_DB=str(db),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit code is non-zero when a step fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-audit", action="store_true", help="run plain uvicorn, without auditrail-instrument")
    args = parser.parse_args(argv)

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    events = DEMO_DIR / "events.jsonl"
    log_path = DEMO_DIR / "app.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    env = app_env(events, DEMO_DIR / "assistant.db")
    command = server_command(port, audit=not args.no_audit)
    print(f"starting: {' '.join(command)}  (in {HERE.relative_to(REPO)})")
    proc = start_server(command, env, log_path)
    try:
        wait_healthy(base_url, proc, log_path)
        print(f"assistant-admin is up on {base_url}; running the scenario:")
        for number, step in enumerate(run_scenario(base_url), 1):
            print(f"  {number:2}. {step}")
    except BaseException:
        stop_server(proc)
        print(log_path.read_text(errors="replace"), file=sys.stderr)
        raise
    code = stop_server(proc)
    if code not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        print(f"the app exited with code {code}:\n{log_path.read_text(errors='replace')}", file=sys.stderr)
    print()
    if args.no_audit:
        print("auditing was off (--no-audit): no events recorded")
    else:
        show_events(events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
