"""Child processes on loopback for the tests: free ports, waiting until a server answers, stopping it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 60.0,
                  any_answer: bool = False, details: Callable[[], str] = lambda: "") -> None:
    """Poll GET url until it answers 200 (or anything at all with any_answer); fail if proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}\n{details()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_answer:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer {url} within {timeout}s\n{details()}")


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0,
                  details: Callable[[], str] = lambda: "") -> None:
    """Poll until 127.0.0.1:port accepts a connection; fail if proc exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}\n{details()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout}s\n{details()}")


def terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM and wait; SIGKILL when it does not exit in time. None or an exited process: nothing to do."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
