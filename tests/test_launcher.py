"""`auditrail-instrument CMD ...` and `opentelemetry-instrument CMD ...`, as real subprocesses.

The app under test is a real package plus a `main.py` that never mentions auditrail; audit events are
written by `AUDITRAIL_EXPORTER=file:PATH` as OTLP JSON lines and read back from that file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditrail.exporters.otlp_json import read_records

VENV_BIN = Path(sys.executable).parent
AUDITRAIL_INSTRUMENT = str(VENV_BIN / "auditrail-instrument")
OTEL_INSTRUMENT = str(VENV_BIN / "opentelemetry-instrument")
MARKER = "started.marker"
APP_EXIT_CODE = 3

PACKAGE = {
    "ledger/__init__.py": "",
    "ledger/billing.py": """
        def change_plan(tenant_id, old_plan, new_plan, *, actor):
            return f"{tenant_id}:{old_plan}->{new_plan}"
    """,
    "ledger/prompts.py": """
        class PromptStore:
            def __init__(self):
                self._texts = {}

            def get(self, tenant_id):
                return self._texts.get(tenant_id)

            def update(self, tenant_id, new_text, editor, reason):
                self._texts[tenant_id] = new_text
                return len(new_text)
    """,
    "ledger/crawler.py": """
        import asyncio
        from dataclasses import dataclass

        @dataclass
        class CrawlResult:
            run_id: str
            pages: int

        async def run_crawl(tenant_id, domain, trigger):
            await asyncio.sleep(0)
            return CrawlResult(run_id="run-42", pages=17)
    """,
    "ledger/ops.py": """
        class FeatureLocked(Exception):
            pass

        def disable_feature(feature, scope, reason):
            if feature == "embed":
                raise FeatureLocked(f"{feature} is locked for {scope}")
            return True
    """,
}

# Written first thing: proves whether the app ran at all.
MAIN = f"""
    from pathlib import Path
    Path({MARKER!r}).write_text("the app ran")

    import asyncio
    import sys

    from ledger.billing import change_plan          # bound at the top, before anything else

    print("plan", change_plan("acme", "free", "pro", actor="alice"))

    import ledger.prompts                           # imported later, used through the module
    store = ledger.prompts.PromptStore()
    print("prompt", store.update("acme", "You are helpful.", "bob", reason="tone"))
    print("prompt", store.update("acme", "Be concise.", editor="bob", reason="length"))

    from ledger import crawler
    result = asyncio.run(crawler.run_crawl("acme", domain="example.com", trigger="indexnow"))
    print("crawl", result.run_id, result.pages)

    from ledger import ops
    try:
        ops.disable_feature("embed", scope="acme", reason="incident 42")
    except ops.FeatureLocked as exc:
        print("caught", type(exc).__module__, type(exc).__qualname__, exc)

    print("done", flush=True)
    sys.exit({APP_EXIT_CODE})
"""

AUDIT_YAML = """\
service_name: ledger-app
delivery: {mode: best_effort}
events:
  - target: ledger.billing:change_plan
    event: billing.plan.change
    tenant: tenant_id
    actor: actor
    before: {plan: old_plan}
    after: {plan: new_plan}
  - target: ledger.prompts:PromptStore.update
    event: prompt.update
    risk: high
    tenant: tenant_id
    actor: editor
    reason: reason
    before: {prompt_hash: sha256(self.get(tenant_id))}
    after: {prompt_hash: sha256(new_text)}
  - target: ledger.crawler:run_crawl
    event: crawl.run
    tenant: tenant_id
    payload: {domain: domain, run_id: result.run_id, pages: result.pages, triggered_by: trigger}
  - target: ledger.ops:disable_feature
    event: killswitch.disable
    tenant: scope
    reason: reason
    payload: {feature: feature, scope: scope}
"""


# --- helpers --------------------------------------------------------------------------------------


def write_app(root: Path, audit_yaml: str | None = AUDIT_YAML, main: str = MAIN) -> Path:
    """The app's folder: the `ledger` package, main.py and (unless None) audit.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, source in PACKAGE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    (root / "main.py").write_text(textwrap.dedent(main))
    if audit_yaml is not None:
        (root / "audit.yaml").write_text(audit_yaml)
    return root


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command with a clean auditrail/OTel environment and the venv's bin first on PATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITRAIL_", "OTEL_")) and k != "PYTHONPATH"}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    # Never the default otlp exporter: with no collector it would retry for seconds at exit.
    base["AUDITRAIL_EXPORTER"] = "console"
    base.update(env)
    return subprocess.run(args, cwd=cwd, env=base, capture_output=True, text=True, timeout=60, check=False)


def events(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Records of an OTLP JSON-lines file by event name, with the payload parsed."""
    problems: list[str] = []
    out: dict[str, list[dict[str, Any]]] = {}
    for record in read_records([path], on_error=lambda p, n, m: problems.append(f"{p}:{n}: {m}")):
        if record["event_name"] == "audit.checkpoint":
            continue  # the chain's own anchors: test_chain_verify and the example app test cover them
        record["payload"] = json.loads(record["attributes"]["audit.payload"])
        out.setdefault(record["event_name"], []).append(record)
    assert not problems, problems
    return out


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Run:
    root: Path
    proc: subprocess.CompletedProcess[str]
    events: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def instrumented_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The app run once as `auditrail-instrument python main.py` (./audit.yaml, file exporter)."""
    root = write_app(tmp_path_factory.mktemp("launcher") / "app")
    out = root.parent / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root, AUDITRAIL_EXPORTER=f"file:{out}")
    assert out.exists(), f"no events file; stderr:\n{proc.stderr}"
    yield Run(root, proc, events(out))


# --- (a) the app audited end to end ---------------------------------------------------------------


def test_from_import_at_top_is_audited(instrumented_run: Run) -> None:
    (event,) = instrumented_run.events["billing.plan.change"]
    attrs = event["attributes"]
    assert attrs["audit.tenant_id"] == "acme"
    assert attrs["enduser.id"] == "alice"
    assert attrs["audit.actor.type"] == "user"
    assert attrs["audit.outcome"] == "success"
    assert attrs["audit.risk"] == "medium"
    assert event["payload"] == {"before": {"plan": "free"}, "after": {"plan": "pro"}}
    assert event["severity_text"] == "INFO"


def test_method_on_later_imported_module_is_audited_with_before_evaluated_before_the_call(
    instrumented_run: Run,
) -> None:
    first, second = instrumented_run.events["prompt.update"]
    assert first["attributes"]["enduser.id"] == "bob"  # positional `editor`
    assert second["attributes"]["enduser.id"] == "bob"  # keyword `editor`
    assert [e["attributes"]["audit.reason"] for e in (first, second)] == ["tone", "length"]
    assert first["payload"] == {"before": {"prompt_hash": None}, "after": {"prompt_hash": sha256("You are helpful.")}}
    assert second["payload"] == {
        "before": {"prompt_hash": sha256("You are helpful.")},
        "after": {"prompt_hash": sha256("Be concise.")},
    }
    assert second["attributes"]["audit.risk"] == "high"
    assert second["severity_text"] == "WARN"


def test_async_function_run_by_asyncio_is_audited_with_its_result(instrumented_run: Run) -> None:
    (event,) = instrumented_run.events["crawl.run"]
    assert event["attributes"]["audit.tenant_id"] == "acme"
    assert event["attributes"]["audit.outcome"] == "success"
    assert event["payload"] == {"domain": "example.com", "run_id": "run-42", "pages": 17, "triggered_by": "indexnow"}


def test_every_event_has_the_audit_scope_resource_and_a_unique_id(instrumented_run: Run) -> None:
    everything = [e for group in instrumented_run.events.values() for e in group]
    assert sorted(instrumented_run.events) == ["billing.plan.change", "crawl.run", "killswitch.disable", "prompt.update"]
    assert len(everything) == 5
    assert {e["scope_name"] for e in everything} == {"auditrail"}
    assert {e["resource"]["service.name"] for e in everything} == {"ledger-app"}
    assert len({e["attributes"]["audit.event_id"] for e in everything}) == 5


# --- (g) the app's own behaviour passes through ---------------------------------------------------


def test_app_exit_code_and_stdout_pass_through_unchanged(instrumented_run: Run) -> None:
    plain = run([sys.executable, "main.py"], instrumented_run.root)
    assert plain.returncode == APP_EXIT_CODE
    assert instrumented_run.proc.returncode == APP_EXIT_CODE, instrumented_run.proc.stderr
    assert instrumented_run.proc.stdout == plain.stdout
    assert instrumented_run.proc.stdout.splitlines()[0] == "plan acme:free->pro"
    assert instrumented_run.proc.stdout.splitlines()[-1] == "done"


def test_uncaught_exception_in_target_keeps_traceback_and_exit_code_and_is_recorded(tmp_path: Path) -> None:
    main = """
        from ledger.ops import disable_feature
        disable_feature("embed", scope="*", reason="drill")
    """
    root = write_app(tmp_path / "app", main=main)
    out = tmp_path / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root, AUDITRAIL_EXPORTER=f"file:{out}")
    assert proc.returncode == 1
    assert proc.stderr.rstrip().splitlines()[-1] == "ledger.ops.FeatureLocked: embed is locked for *"
    (event,) = events(out)["killswitch.disable"]  # flushed at exit despite the crash
    assert event["attributes"]["audit.outcome"] == "failure"
    assert event["attributes"]["audit.tenant_id"] == "*"


# --- (h) a raising target -------------------------------------------------------------------------


def test_raising_target_reraises_the_same_exception_type_and_records_failure(instrumented_run: Run) -> None:
    assert "caught ledger.ops FeatureLocked embed is locked for acme" in instrumented_run.proc.stdout.splitlines()
    (event,) = instrumented_run.events["killswitch.disable"]
    attrs = event["attributes"]
    assert attrs["audit.outcome"] == "failure"
    assert attrs["audit.reason"] == "incident 42"
    assert attrs["audit.risk"] == "critical"
    assert event["payload"] == {
        "feature": "embed",
        "scope": "acme",
        "error": {"type": "FeatureLocked", "message": "embed is locked for acme"},
    }


# --- (b) (c) (e) refused before the app starts ----------------------------------------------------


def test_unknown_config_key_exits_2_before_the_app_runs_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = AUDIT_YAML.replace("    tenant: tenant_id\n    actor: actor\n", "    tenat: tenant_id\n    actor: actor\n", 1)
    assert bad != AUDIT_YAML
    root = write_app(tmp_path / "app", audit_yaml=bad)
    line = bad.splitlines().index("    tenat: tenant_id") + 1
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root, AUDITRAIL_EXPORTER=f"file:{tmp_path / 'e.jsonl'}")
    assert proc.returncode == 2, proc.stderr
    assert not (root / MARKER).exists(), "the app ran despite a broken audit.yaml"
    assert f"{root / 'audit.yaml'}:{line}:" in proc.stderr
    assert "'tenat'" in proc.stderr
    assert "did you mean 'tenant'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_invalid_yaml_exits_2_before_the_app_runs_with_its_line(tmp_path: Path) -> None:
    bad = AUDIT_YAML.replace("before: {plan: old_plan}", "before: {plan: old_plan", 1)
    root = write_app(tmp_path / "app", audit_yaml=bad)
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root)
    assert proc.returncode == 2, proc.stderr
    assert not (root / MARKER).exists()
    assert f"{root / 'audit.yaml'}:" in proc.stderr and "invalid YAML" in proc.stderr


def test_config_given_by_auditrail_config_is_named_in_errors(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app", audit_yaml=None)
    config = tmp_path / "conf" / "audit-prod.yaml"
    config.parent.mkdir()
    config.write_text(AUDIT_YAML.replace("risk: high", "risk: severe"))
    line = AUDIT_YAML.splitlines().index("    risk: high") + 1
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root, AUDITRAIL_CONFIG=str(config))
    assert proc.returncode == 2, proc.stderr
    assert not (root / MARKER).exists()
    assert f"{config}:{line}:" in proc.stderr and "severe" in proc.stderr


def test_missing_audit_yaml_exits_2_before_the_app_runs(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app", audit_yaml=None)
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root)
    assert proc.returncode == 2
    assert not (root / MARKER).exists()
    assert "audit.yaml" in proc.stderr and "AUDITRAIL_CONFIG" in proc.stderr


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("ledger.refunds:issue_refund", "module 'ledger.refunds' not found"),
        ("ledger.billing:cancel_plan", "ledger.billing defines no 'cancel_plan'"),
        ("ledger.prompts:PromptStore.delete", "ledger.prompts:PromptStore defines no 'delete'"),
    ],
    ids=["module-not-found", "function-not-defined", "method-not-defined"],
)
def test_impossible_target_exits_2_before_the_app_runs(tmp_path: Path, target: str, expected: str) -> None:
    yaml_text = AUDIT_YAML + f"  - target: {target}\n    event: billing.refund.issue\n"
    root = write_app(tmp_path / "app", audit_yaml=yaml_text)
    line = yaml_text.splitlines().index(f"  - target: {target}") + 1
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root)
    assert proc.returncode == 2, proc.stderr
    assert not (root / MARKER).exists()
    assert "impossible target" in proc.stderr
    assert expected in proc.stderr
    assert f"{root / 'audit.yaml'}:{line}:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_exporter_exits_2_before_the_app_runs(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app")
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root, AUDITRAIL_EXPORTER="foo")
    assert proc.returncode == 2
    assert not (root / MARKER).exists()
    assert "AUDITRAIL_EXPORTER='foo'" in proc.stderr
    assert "otlp, console or file:PATH" in proc.stderr


# --- (d) --check ----------------------------------------------------------------------------------


def test_check_prints_ok_with_the_target_count_and_runs_nothing(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app")
    proc = run([AUDITRAIL_INSTRUMENT, "--check"], root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{root / 'audit.yaml'}: OK, 4 audited target(s)"
    assert not (root / MARKER).exists()


def test_check_never_executes_the_apps_packages(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app")
    (root / "ledger" / "__init__.py").write_text("open('package-imported.marker', 'w').close()\n")
    proc = run([AUDITRAIL_INSTRUMENT, "--check"], root)
    assert proc.returncode == 0, proc.stderr
    assert not (root / "package-imported.marker").exists(), "validating audit.yaml ran the app's ledger/__init__.py"


def test_check_accepts_number_and_boolean_literals(tmp_path: Path) -> None:
    yaml_text = AUDIT_YAML + (
        "  - target: ledger.billing:change_plan\n"
        "    event: billing.quota.override\n"
        "    before: {limit: 100}\n"
        "    after: {limit: 250, unlimited: false}\n"
    )
    root = write_app(tmp_path / "app", audit_yaml=yaml_text)
    proc = run([AUDITRAIL_INSTRUMENT, "--check"], root)
    assert proc.returncode == 0, proc.stderr
    assert "OK, 5 audited target(s)" in proc.stdout


def test_check_reports_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app", audit_yaml=AUDIT_YAML.replace("ledger.crawler:run_crawl", "ledger.crawler:crawl"))
    proc = run([AUDITRAIL_INSTRUMENT, "--check"], root)
    assert proc.returncode == 2
    assert "ledger.crawler defines no 'crawl'" in proc.stderr
    assert "OK" not in proc.stdout
    proc = run([str(Path(AUDITRAIL_INSTRUMENT).with_name("auditrail")), "check"], root)
    assert proc.returncode == 2
    assert proc.stderr.startswith("auditrail check: ") and "defines no 'crawl'" in proc.stderr  # its own name


# --- (f) the upstream launcher --------------------------------------------------------------------


def test_auditrail_is_registered_as_an_opentelemetry_instrumentor_entry_point() -> None:
    from auditrail.instrumentor import AuditInstrumentor

    found = [ep for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor") if ep.name == "auditrail"]
    assert len(found) == 1
    assert found[0].load() is AuditInstrumentor


def test_opentelemetry_instrument_loads_auditrail_and_audits_the_app(tmp_path: Path) -> None:
    root = write_app(tmp_path / "app", audit_yaml=None)
    config = tmp_path / "audit.yaml"
    config.write_text(AUDIT_YAML)
    out = tmp_path / "events.jsonl"
    proc = run(
        [OTEL_INSTRUMENT, "python", "main.py"], root,
        AUDITRAIL_CONFIG=str(config), AUDITRAIL_EXPORTER=f"file:{out}",
        OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
    )
    assert proc.returncode == APP_EXIT_CODE, proc.stderr
    assert (root / MARKER).exists()
    assert out.exists(), f"auditrail was not loaded by opentelemetry-instrument; stderr:\n{proc.stderr}"
    got = events(out)
    assert {name: len(group) for name, group in got.items()} == {
        "billing.plan.change": 1, "prompt.update": 2, "crawl.run": 1, "killswitch.disable": 1,
    }
    assert got["crawl.run"][0]["payload"]["run_id"] == "run-42"
    assert got["killswitch.disable"][0]["attributes"]["audit.outcome"] == "failure"


# --- (e) an interpreter that cannot import auditrail; warnings once (issue 14, points 6 and 7) ------


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real second venv without auditrail (nor pip: nothing is installed into it)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import auditrail"], capture_output=True, check=False).returncode != 0
    return python


@pytest.mark.parametrize("mode", ["fail_closed", "best_effort"])
def test_an_interpreter_without_auditrail_does_not_start_the_app(tmp_path: Path, bare_python: str, mode: str) -> None:
    root = write_app(tmp_path / "app", audit_yaml=AUDIT_YAML.replace("best_effort", mode))
    proc = run([AUDITRAIL_INSTRUMENT, bare_python, "main.py"], root, AUDITRAIL_EXPORTER=f"file:{tmp_path / 'e.jsonl'}")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert not (root / MARKER).exists(), "the app ran unaudited"
    assert f"{bare_python} cannot import auditrail" in proc.stderr
    assert "was not started" in proc.stderr
    assert f"{bare_python} -m pip install " in proc.stderr  # how to install it there
    assert proc.stdout == ""


def test_a_child_run_by_an_interpreter_without_auditrail_is_told_it_is_not_audited(
        tmp_path: Path, bare_python: str) -> None:
    main = f"""
        import subprocess
        import sys
        child = subprocess.run([{bare_python!r}, "-c", "print('child ran')"], capture_output=True, text=True)
        sys.stderr.write(child.stderr)
        print(child.stdout.strip(), child.returncode)
    """
    root = write_app(tmp_path / "app", main=main)
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "child ran 0"  # only the exec'd process is stopped
    assert f"{bare_python} cannot import auditrail" in proc.stderr and "is NOT audited" in proc.stderr


def test_a_config_warning_prints_once_as_one_line(tmp_path: Path) -> None:
    yaml = AUDIT_YAML.replace("payload: {domain: domain, run_id: result.run_id, pages: result.pages, "
                              "triggered_by: trigger}", "payload: {domain: domain}")
    root = write_app(tmp_path / "app", audit_yaml=yaml)
    proc = run([AUDITRAIL_INSTRUMENT, "python", "main.py"], root)
    assert proc.returncode == APP_EXIT_CODE, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "should carry" in line]
    assert lines == [f"auditrail-instrument: warning: {root / 'audit.yaml'}:18: crawl.run events should carry "
                     "run_id, triggered_by (see the event types table in the README)"], proc.stderr
    assert "ConfigWarning" not in proc.stderr and ".py:" not in proc.stderr


def test_under_opentelemetry_instrument_a_config_warning_prints_once_as_a_log_line(tmp_path: Path) -> None:
    yaml = AUDIT_YAML.replace("payload: {domain: domain, run_id: result.run_id, pages: result.pages, "
                              "triggered_by: trigger}", "payload: {domain: domain}")
    root = write_app(tmp_path / "app", audit_yaml=yaml)
    proc = run([OTEL_INSTRUMENT, "python", "main.py"], root, OTEL_TRACES_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    assert proc.returncode == APP_EXIT_CODE, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "should carry" in line]
    assert len(lines) == 1 and lines[0].startswith("auditrail: warning: "), proc.stderr
    assert "ConfigWarning" not in proc.stderr
