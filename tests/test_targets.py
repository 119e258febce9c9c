"""`module:instance.method` targets (e.g. `hijack.signals:hijack_started.send`) and inherited methods are
checked like any target: the path must exist and the expressions may only use the method's parameters."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auditrail.config import ConfigError, parse_config

pytest.importorskip("django")

SIGNALS = '''
from django.dispatch import Signal

started = Signal()
ended = Signal()
'''

ADMIN = '''
from flask_admin.contrib.sqla import ModelView


class PromptView(ModelView):
    can_delete = False
'''


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "sigs.py").write_text(SIGNALS)
    (tmp_path / "adminapp.py").write_text(ADMIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _check(target: str, extra: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(f"events:\n  - target: {target}\n    event: custom.act\n{extra}", filename="audit.yaml",
                     check_targets=True)
    return str(info.value)


def test_instance_method_targets_are_resolved_through_imports_to_the_class(app_dir: Path) -> None:
    config = parse_config("events:\n  - target: sigs:started.send\n    event: custom.act\n"
                          "    actor: named['hijacker']\n    payload: {s: sender, me: str(self)}\n", check_targets=True)
    assert config.events[0].qualname == "started.send"
    message = _check("sigs:started.sendd")
    assert message == ("audit.yaml:2:13: events[0].target: impossible target: sigs:started (an instance of "
                       "django.dispatch.dispatcher.Signal) defines no 'sendd'")
    message = _check("sigs:started.send", "    actor: hijacker\n")
    assert message.startswith("audit.yaml:4:12: events[0].actor: bad expression 'hijacker': unknown name 'hijacker'")
    assert "named" in message and "sender" in message
    assert "sigs defines no 'startd'" in _check("sigs:startd.send")
    assert "is an instance of django.dispatch.dispatcher.Signal, which is not callable" in _check("sigs:started")


def test_inherited_methods_are_found_in_base_classes_of_other_packages(app_dir: Path) -> None:
    pytest.importorskip("flask_admin")
    parse_config("events:\n  - target: adminapp:PromptView.update_model\n    event: custom.act\n"
                 "    payload: {m: model.id, f: form}\n", check_targets=True)
    assert "adminapp:PromptView defines no 'update_modle'" in _check("adminapp:PromptView.update_modle")
    assert "unknown name 'modle'" in _check("adminapp:PromptView.update_model", "    payload: {m: modle}\n")


def test_auditrail_check_and_instrument_check_refuse_a_typo_in_an_instance_target(app_dir: Path) -> None:
    (app_dir / "audit.yaml").write_text(textwrap.dedent("""
        events:
          - target: sigs:started.send
            event: admin.impersonation.start
            actor: named["hijacker"]
            payload:
              impersonated: named["hijacked"]
              sender: sendr
        """))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(app_dir)}
    for command in ([str(bin_dir / "auditrail"), "check"], [str(bin_dir / "auditrail-instrument"), "--check"]):
        proc = subprocess.run(command, cwd=app_dir, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "audit.yaml:8:15: events[0].payload.sender: bad expression 'sendr': unknown name 'sendr'" in proc.stderr


def test_an_instance_method_target_binds_the_callers_arguments_not_self(audit) -> None:
    audit.module("sigs2", SIGNALS)
    audit.instrument("""
        events:
          - target: sigs2:started.send
            event: custom.signal
            actor: named.get("who")
            payload: {sender: sender, same: "'Signal' in str(self)"}
        """)
    sigs = importlib.import_module("sigs2")
    sigs.started.send("S-positional", who="ann")
    sigs.started.send(sender="S-keyword", who="bob")
    sigs.ended.send("other")  # another instance of the same class: not audited
    events = audit.events("custom.signal")
    assert [(e["attrs"].get("enduser.id"), e["payload"]) for e in events] == [
        ("ann", {"sender": "S-positional", "same": True}), ("bob", {"sender": "S-keyword", "same": True})]
    assert audit.counters.extractor_errors == 0


def test_the_real_django_hijack_signal_target_is_checked() -> None:
    pytest.importorskip("hijack")
    parse_config("events:\n  - target: hijack.signals:hijack_started.send\n    event: admin.impersonation.start\n"
                 "    actor: named['hijacker'].get_username()\n"
                 "    payload: {impersonated: \"named['hijacked'].get_username()\"}\n", check_targets=True)
    assert "hijack.signals:hijack_started (an instance of django.dispatch.dispatcher.Signal) defines no 'sned'" in \
        _check("hijack.signals:hijack_started.sned")
    assert "unknown name 'hijacker'" in _check("hijack.signals:hijack_started.send", "    actor: hijacker\n")


DJANGO_ADMINS = '''
import django.contrib.admin as dj_admin
from django.contrib import admin


@admin.register(Prompt)  # parsed, never run
class PromptAdmin(admin.ModelAdmin):
    list_display = ("name",)


class NoteAdmin(dj_admin.options.ModelAdmin):
    pass
'''


def test_a_base_class_named_through_a_module_is_followed_like_the_django_admins(app_dir: Path) -> None:
    """`class PromptAdmin(admin.ModelAdmin)` (and Django's own UserAdmin) had unchecked expressions: a typo passed."""
    (app_dir / "djadmins.py").write_text(DJANGO_ADMINS)
    for target in ("djadmins:PromptAdmin.save_model", "djadmins:NoteAdmin.delete_model",
                   "django.contrib.auth.admin:UserAdmin.save_model"):
        parse_config(f"events:\n  - target: {target}\n    event: custom.act\n"
                     "    actor: request.user.username\n    payload: {o: str(obj)}\n", check_targets=True)
        message = _check(target, "    actor: reqest.user.username\n")
        assert "unknown name 'reqest'" in message and "request" in message, message
    assert "djadmins:PromptAdmin defines no 'save_modle'" in _check("djadmins:PromptAdmin.save_modle")
