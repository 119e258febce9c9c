"""A light install for the app (issue 14): `pip install auditrail` carries the instrumentation only.

A fresh venv (a real one, in tmp) gets this repository's wheel without extras plus Flask, as a Flask
app's environment would: no chDB, pyarrow, pandas, FastAPI or uvicorn. The store's CLI verbs say what to
install; a Flask app runs audited under `auditrail-instrument` there, with the Python twins of the
native core (auditrail_native is a separate package: `pip install ./native`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auditrail.exporters.otlp_json import read_records

REPO = Path(__file__).resolve().parent.parent
STORE_ONLY = ("chdb", "pyarrow", "pandas", "fastapi", "uvicorn", "clickhouse-connect")
LIGHT_MAX_MB = 150  # measured 104 MB with Flask (an empty venv: 26 MB); auditrail[store] alone: 1,018 MB


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pip of that venv (its own cache and index: the machine's usual ones)."""
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding this repository's wheel (no extras) and Flask."""
    root = tmp_path_factory.mktemp("light")
    _pip(Path(sys.executable), "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "wheels"), str(REPO))
    (wheel,) = (root / "wheels").glob("auditrail-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    _pip(root / "venv" / "bin" / "python", "install", "--quiet", str(wheel), "flask>=3,<4")
    return root / "venv" / "bin"


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUDITRAIL_", "OTEL_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_the_light_install_carries_none_of_the_store(light: Path) -> None:
    installed = json.loads(_pip(light / "python", "list", "--format=json").stdout)
    names = {p["name"].lower() for p in installed}
    assert "auditrail" in names and "flask" in names
    assert not names & set(STORE_ONLY), names & set(STORE_ONLY)
    size = subprocess.run(["du", "-sm", str(light.parent)], capture_output=True, text=True, check=True)
    megabytes = int(size.stdout.split()[0])
    print(f"light venv (auditrail + flask): {megabytes} MB")
    assert megabytes < LIGHT_MAX_MB


@pytest.mark.parametrize("verb", ["serve", "migrate", "export", "tokens", "retention", "approvals"])
def test_store_verbs_say_exactly_what_to_install(light: Path, verb: str) -> None:
    proc = subprocess.run([str(light / "auditrail"), verb, "--help"], capture_output=True, text=True,
                          env=_env(light), timeout=60, check=False)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"auditrail {verb} needs the store: pip install 'auditrail[store]' (not installed: ")
    assert "Traceback" not in proc.stderr


APP = '''
import sys
from flask import Flask, jsonify

import plans

app = Flask(__name__)


@app.post("/tenants/<tenant>/plan/<plan>")
def change(tenant, plan):
    return jsonify(old=plans.change_plan(tenant, plan, actor="alice"))


client = app.test_client()
assert client.post("/tenants/acme/plan/pro", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
try:
    import auditrail_native  # noqa: F401
    print("native")
except ImportError:
    print("python twins")
'''

PLANS = '''
PLANS = {"acme": "free"}


def change_plan(tenant_id, new_plan, actor):
    old, PLANS[tenant_id] = PLANS.get(tenant_id), new_plan
    return old
'''

AUDIT_YAML = '''
service_name: flask-app
delivery: {mode: durable, spool_dir: .auditrail/spool}
context:
  source_ip: [request.client.host]
events:
  - target: plans:change_plan
    event: billing.plan.change
    tenant: tenant_id
    actor: actor
    after: {plan: new_plan}
'''


def test_a_flask_app_runs_audited_in_the_light_install(light: Path, tmp_path: Path) -> None:
    for name, text in (("app.py", APP), ("plans.py", PLANS), ("audit.yaml", AUDIT_YAML)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    out = tmp_path / "events.jsonl"
    env = _env(light, AUDITRAIL_EXPORTER=f"file:{out}")
    proc = subprocess.run([str(light / "auditrail-instrument"), "python", "app.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["python", "twins"]  # no native core in this venv: the Python twins ran
    records = [r for r in read_records([out]) if r["event_name"] == "billing.plan.change"]
    assert len(records) == 1
    attrs = records[0]["attributes"]
    assert (attrs["audit.tenant_id"], attrs["enduser.id"], attrs["client.address"]) == ("acme", "alice", "192.0.2.7")
    assert json.loads(attrs["audit.payload"])["after"] == {"plan": "pro"}
    verified = subprocess.run([str(light / "auditrail"), "verify", str(out)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
