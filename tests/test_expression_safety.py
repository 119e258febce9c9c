"""The expression language is what the README says: safe. Each red-team finding of issue 14 is a test here."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from auditrail.config import ConfigError, parse_config

TARGET_APP = '''
import os
import types


class Store:
    os = os  # a module reachable from a parameter: self.os.system(...)

    def __init__(self):
        self.data = {"k": "v"}
        self.calls = 0

    def get(self, key):
        return self.data.get(key)

    def update(self, key, value, mod=None, gen=None, tb=None, fn=None, n=0, s="x", k="k"):
        self.calls += 1
        self.data[key] = value
        return self.calls


def run_command(cmd):
    return os.system(cmd)


def current():
    return "ann"
'''


def _load_error(yaml_text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(yaml_text), filename="audit.yaml")
    return str(info.value)


def _entry(expr: str) -> str:
    return f"""
        events:
          - target: safeapp.store:Store.update
            event: custom.update
            payload:
              probe: {json.dumps(expr)}
        """


@pytest.mark.parametrize("expr, expected", [
    ('call("os:system", "id")', "never call into 'os'"),
    ('call("builtins:eval", "1")', "never call into 'builtins'"),
    ('call("builtins:getattr", self, "x")', "never call into 'builtins'"),
    ('call("subprocess:run", "id")', "never call into 'subprocess'"),
    ('call("importlib:import_module", "os")', "never call into 'importlib'"),
    ('call("ctypes:CDLL", "libc.so.6")', "never call into 'ctypes'"),
    ('call("pickle:loads", value)', "never call into 'pickle'"),
    ('call("safeapp.store:Store.__init__", self)', "dunder names are not allowed"),
    ('call("safeapp.__init__:current")', "dunder names are not allowed"),
    ('call("json:loads", value)', "'json' is not in call_modules (allowed: safeapp)"),
    ('self.data["__class__"]', "'__class__'"),
    ('gen.gi_frame.f_globals["__builtins__"]["__import__"]("os")', "the key '__"),
    ('coalesce(value, "__subclasses__")', "names a dunder"),
    ('"x" * 1000000000', "above the limit"),
    ('f"{1:>1000000000}"', "above the limit"),
    ('"%1000000000d" % 1', "above the limit"),
])
def test_refused_when_audit_yaml_is_loaded_with_file_line_and_column(expr: str, expected: str) -> None:
    message = _load_error(_entry(expr))
    assert message.startswith("audit.yaml:6:")  # the line of the expression, and its column
    assert "events[0].payload.probe" in message and expected in message


def test_call_modules_never_lists_the_forbidden_ones_and_defaults_to_the_targets_packages() -> None:
    message = _load_error("""
        call_modules: [safeapp, os]
        events:
          - {target: safeapp.store:Store.update, event: custom.update}
        """)
    assert message.startswith("audit.yaml:2:") and "call_modules[1]" in message
    assert "'os' can never be called from audit expressions, even when listed" in message
    assert "subprocess" in _load_error("call_modules: [subprocess.run]\nevents: [{target: 'a:b', event: a.b}]")
    config = parse_config(textwrap.dedent("""
        call_modules: [json, safeapp.store]
        events:
          - target: other.mod:f
            event: custom.update
            payload: {a: 'call("json:dumps", 1)', b: 'call("safeapp.store:current")'}
        """))
    assert config.call_modules == ["json", "safeapp.store"]
    assert parse_config("events: [{target: 'app.a:f', event: a.b}, {target: 'lib.b:g', event: a.c}]").call_modules \
        == ["app", "lib"]
    assert "not in call_modules (allowed: json, safeapp.store)" in _load_error("""
        call_modules: [json, safeapp.store]
        events: [{target: 'safeapp.store:f', event: a.b, actor: 'call("safeapp.other:f")'}]
        """)


@pytest.mark.parametrize("expr, what", [
    ("mod.system('touch ' + value)", "module"),
    ("self.os.system('touch ' + value)", "module"),
    ("gen.gi_frame.f_globals", "generator"),
    ("tb.tb_frame.f_globals", "traceback"),
    ("fn.func_globals", "function"),
    ('self.data[k]', "key '__class__'"),
    ('call("safeapp.store:os.system", "touch " + value)', "passes through module 'os'"),
    ('call("safeapp.store:Store.os.system", "touch " + value)', "module"),
    ("s * n", "repetition would build 1000000000"),
    ("[s] * n", "repetition would build 1000000000"),
    ("f'{s:>{n}}'", "format spec"),
    ("s.ljust(n)", "str.ljust() would build 1000000000"),
    ("s.center(n)", "str.center()"),
    ("(1).to_bytes(n, 'big')", "int.to_bytes()"),
    ("value.replace('', value)", "str.replace()"),
    ("value.join([value] * 20)", "str.join()"),
    ("k % ()", "above the limit"),
])
def test_refused_at_run_time_the_field_is_empty_and_nothing_runs(audit, tmp_path: Path, caplog, expr: str,
                                                                 what: str) -> None:
    audit.module("safeapp.store", TARGET_APP)
    audit.instrument(_entry(expr))
    store_mod = importlib.import_module("safeapp.store")
    marker = tmp_path / "pwned"

    def gen():
        yield 1

    try:
        raise ValueError("x")
    except ValueError as exc:
        tb = exc.__traceback__
    big = "%1000000000d"
    store = store_mod.Store()
    started = time.monotonic()
    assert store.update("key", "x" * 1000 if "replace" in expr or "join" in expr else str(marker), mod=os,
                        gen=gen(), tb=tb, fn=store_mod.current, n=1_000_000_000, s="x",
                        k=big if "%" in expr else "__class__") == 1
    assert time.monotonic() - started < 2
    event = audit.one("custom.update")
    assert event["payload"]["probe"] is None
    assert not marker.exists()
    assert audit.counters.extractor_errors == 1
    assert what in caplog.text


def test_what_the_language_allows_still_works(audit) -> None:
    audit.module("safeapp.store", TARGET_APP)
    audit.instrument("""
        events:
          - target: safeapp.store:Store.update
            event: custom.update
            actor: 'call("safeapp.store:current")'
            payload:
              got: self.get(key)
              size: len(self.data)
              pad: s.ljust(8, "-")
              rep: s * 3
              fmt: f"{n:>6}|{s!r:<5}|{value:.3}"
              pct: '"%05d" % n'
              replaced: value.replace("a", "bb")
              joined: '",".join([s, value])'
              item: 'self.data["key"]'
        """)
    store = importlib.import_module("safeapp.store").Store()
    store.update("key", "abc", n=42, s="x")
    event = audit.one("custom.update")
    assert event["attrs"]["enduser.id"] == "ann"
    assert event["payload"] == {"got": "abc", "size": 2, "pad": "x-------", "rep": "xxx",
                                "fmt": "    42|'x'  |abc", "pct": "00042", "replaced": "bbbc", "joined": "x,abc",
                                "item": "abc"}
    assert audit.counters.extractor_errors == 0


REENTRY_APP = '''
class Store:
    def __init__(self):
        self.calls = 0

    def update(self, key, value):
        self.calls += 1
        return self.calls

    def peek(self, key):
        return self.calls


STORE = Store()


def peek_via_module(key):
    return STORE.update(key, "again")
'''


@pytest.mark.parametrize("generic", [False, True])
def test_a_target_called_from_an_expression_runs_unaudited_and_never_recurses(audit, generic: bool) -> None:
    audit.module("reapp.store", REENTRY_APP)
    audit.instrument("""
        events:
          - target: reapp.store:Store.update
            event: custom.update
            before: {inner: 'self.update(key, "from-before")'}
            payload: {via_call: 'call("reapp.store:peek_via_module", key)'}
          - target: reapp.store:Store.peek
            event: custom.peek
        """)
    mod = importlib.import_module("reapp.store")
    if generic:
        mod.Store.__dict__["update"]._self_wrapper._gen = None
    assert mod.STORE.update("k", "v") == 2  # the before ran the target once, unaudited
    events = audit.events()
    assert [e["event"] for e in events] == ["custom.update"]
    assert events[0]["payload"] == {"before": {"inner": 1}, "via_call": 3}
    assert mod.STORE.calls == 3
    mod.STORE.peek("k")  # outside an expression the other target is audited as usual
    assert [e["event"] for e in audit.events()] == ["custom.update", "custom.peek"]


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb += f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n"
    bomb += "events: [{target: 'x:y', event: a.b}]\n"
    assert len(bomb) < 420
    started = time.monotonic()
    message = _load_error(bomb)
    assert time.monotonic() - started < 2
    assert "more than 20000 values (YAML aliases count each time they are used)" in message
    # a few aliases are fine
    config = parse_config("ctx: &who editor\nevents: [{target: 'x:y', event: a.b, actor: *who}]".replace("ctx", "service_name"))
    assert config.events[0].fields["actor"].source == "editor"


@pytest.mark.parametrize("expr, expected", [
    ("-" * 1900 + "1", "nested too deeply"),
    ("(" * 250 + "1" + ")" * 250, "too many nested parentheses"),
    ("a." * 60 + "b", "nested too deeply"),
    ("x + " * 700 + "x", "characters long"),
    ("[" + "1, " * 500 + "1]", "syntax nodes"),
])
def test_deep_or_huge_expressions_are_refused_at_load_with_their_location(expr: str, expected: str) -> None:
    message = _load_error(f"events:\n  - target: x:y\n    event: a.b\n    actor: '{expr}'\n")
    assert message.startswith("audit.yaml:4:12: events[0].actor: bad expression") and expected in message


def test_deep_yaml_is_refused_without_a_traceback() -> None:
    assert "nested too deeply" in _load_error("x: " + "[" * 5000 + "]" * 5000)
    assert "nested deeper than 32 levels" in _load_error("x: " + "[" * 40 + "]" * 40)


MEMORY_APP = '''
def act(text, n):
    return len(text)
'''

MEMORY_YAML = '''
delivery: {mode: best_effort}
events:
  - target: memapp:act
    event: custom.act
    payload:
      repeated: text * n
      padded: "f'{text:>{n}}'"
      justified: text.rjust(n)
      constant_ok: '"y" * 10'
'''

MEMORY_SCRIPT = '''
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
import memapp
memapp.act("x", 400_000_000)
import auditrail
auditrail.flush(10)
# VmHWM is this process's own peak: ru_maxrss also keeps the peak of the parent it was forked from (pytest).
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print("peak_kb", int(hwm.split()[1]))
'''


def test_huge_results_are_refused_before_they_are_built_under_a_memory_limit(tmp_path: Path) -> None:
    (tmp_path / "memapp.py").write_text(MEMORY_APP)
    (tmp_path / "audit.yaml").write_text(MEMORY_YAML)
    (tmp_path / "main.py").write_text(MEMORY_SCRIPT)
    out = tmp_path / "events.jsonl"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "AUDITRAIL_EXPORTER": f"file:{out}", "PYTHONPATH": str(tmp_path),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(bin_dir / "auditrail-instrument"), "python", "main.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_kb = int(proc.stdout.split("peak_kb")[1])
    assert peak_kb < 300_000, f"{peak_kb} kB peak: a huge value was built"
    records = [r for line in out.read_text().splitlines()
               for rl in json.loads(line)["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    acts = [r for r in records if r.get("eventName") == "custom.act"]
    assert len(acts) == 1
    attrs = {a["key"]: a["value"] for a in acts[0]["attributes"]}
    assert json.loads(attrs["audit.payload"]["stringValue"]) == {
        "repeated": None, "padded": None, "justified": None, "constant_ok": "yyyyyyyyyy"}
