"""`integrations:` in audit.yaml: checked at load with file:line:column; `auditrail integrations` lists them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditrail.config import ConfigError, parse_config
from auditrail.integrations import client_ip, networks

AUDITRAIL = str(Path(sys.executable).parent / "auditrail")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("integrations:\n  djanga: false\n",
         r"^audit\.yaml:2:3: integrations\.djanga: unknown integration 'djanga' \(did you mean 'django'\?\)"),
        ("integrations:\n  django:\n    model: all\n",
         r"^audit\.yaml:3:5: integrations\.django\.model: unknown option 'model' of the django integration "
         r"\(did you mean 'models'\?\)"),
        ("integrations:\n  django:\n    bulk_max_rows: lots\n",
         r"^audit\.yaml:3:20: integrations\.django\.bulk_max_rows: must be a whole number of at least 1"),
        ("integrations:\n  django:\n    trusted_proxies: [10.0.0.0/8, proxy.local]\n",
         r"^audit\.yaml:3:35: integrations\.django\.trusted_proxies\[1\]: 'proxy.local' is not an IP address"),
        ("integrations:\n  django:\n    models: [Policy]\n",
         r"^audit\.yaml:3:14: integrations\.django\.models\[0\]: 'Policy' is not an app_label\.Model name"),
        ("integrations:\n  django:\n    models: {catalog.Policy: Policy Events}\n",
         r"integrations\.django\.models\.catalog\.Policy: the event prefix 'Policy Events' must be dotted"),
        ("integrations:\n  django:\n    tenant: 'obj.'\n",
         r"^audit\.yaml:3:13: integrations\.django\.tenant: bad expression 'obj\.'"),
        ("integrations:\n  django: yes please\n", r"integrations\.django: must be false \(off\), true \(on\) or a mapping"),
        ("integrations: [django]\n", r"^audit\.yaml:1:15: integrations: must be a mapping"),
    ],
)
def test_bad_integration_options_are_reported_with_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, filename="audit.yaml")


def test_a_config_without_events_is_valid_and_options_are_parsed() -> None:
    cfg = parse_config("service_name: s\nintegrations:\n  django_hijack: false\n  django:\n"
                       "    models: {catalog.Policy: policy, catalog.Note: null}\n    bulk_max_rows: 50\n")
    assert cfg.events == []
    assert cfg.integrations["django_hijack"] is None
    assert cfg.integrations["django"]["models"] == {"catalog.Policy": "policy", "catalog.Note": None}
    assert cfg.integrations["django"]["bulk_max_rows"] == 50


def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_ip("203.0.113.9", "6.6.6.6", trusted) == "203.0.113.9"  # a client's own claim
    assert client_ip("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3", trusted) == "198.51.100.7"
    assert client_ip("127.0.0.1", "6.6.6.6", ()) == "127.0.0.1"  # no proxy configured: the peer


def test_auditrail_integrations_lists_each_with_its_library_range_and_events(tmp_path: Path) -> None:
    (tmp_path / "audit.yaml").write_text("integrations:\n  django_impersonate: false\n")
    done = subprocess.run([AUDITRAIL, "integrations", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=True)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) >= {"django", "django_hijack", "django_impersonate"}
    assert rows["django"]["present"] is True and rows["django"]["installed"]
    assert rows["django"]["supported"] == ">=4.2,<6" and "auth.login.failed" in rows["django"]["events"]
    assert rows["django_impersonate"]["enabled"] is False and rows["django_impersonate"]["off_in_config"] is True
    table = subprocess.run([AUDITRAIL, "integrations"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           check=True).stdout
    assert "django_hijack" in table and "admin.impersonation.start" in table


def test_auditrail_check_rejects_an_unknown_option(tmp_path: Path) -> None:
    (tmp_path / "audit.yaml").write_text("integrations:\n  django:\n    bulk_max_row: 5\n")
    done = subprocess.run([AUDITRAIL, "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "audit.yaml:3:5: integrations.django.bulk_max_row: unknown option" in done.stderr


def test_an_integration_stands_aside_for_a_library_the_events_audit_by_hand(tmp_path: Path) -> None:
    (tmp_path / "audit.yaml").write_text(
        "events:\n  - target: hijack.signals:hijack_started.send\n    event: custom.hijack\n"
        "integrations:\n  django_impersonate: true\n")
    done = subprocess.run([AUDITRAIL, "integrations", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=True)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["django_hijack"]["by_hand"] is True and rows["django_hijack"]["enabled"] is False
    assert rows["django"]["enabled"] is True  # `hijack` is not `django`: each library on its own


def test_setting_up_the_integrations_imports_none_of_their_libraries(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from auditrail.config import parse_config\n"
        "from auditrail.instrumentor import AuditInstrumentor\n"
        "AuditInstrumentor().instrument(config=parse_config('delivery: {mode: best_effort}\\n'))\n"
        "from auditrail.integrations.django import MARKERS\n"
        "from auditrail import runtime\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'hijack', 'impersonate'))\n"
        "s = runtime.recorder.sources\n"
        "print(loaded, len(MARKERS), len(s.actor) + len(s.source_ip) + len(s.marker))\n"
    )
    env = {"PATH": str(Path(sys.executable).parent), "AUDITRAIL_EXPORTER": "console"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    # set up (both impersonation markers registered), nothing imported, and no request fallbacks for
    # audit.yaml's events yet: an app that never imports Django pays nothing for them on each event
    assert done.stdout.strip() == "[] 2 0"


UNINSTRUMENT = '''
import json

from auditrail.config import parse_config
from auditrail.instrumentor import AuditInstrumentor

instrumentor = AuditInstrumentor()
instrumentor.instrument(config=parse_config(
    "delivery: {mode: best_effort}\\nintegrations:\\n  django: {models: [catalog.Policy]}\\n"))
import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.db.models.query import QuerySet  # noqa: E402
from django.db.models.signals import post_save  # noqa: E402

from catalog.models import Policy  # noqa: E402

call_command("migrate", verbosity=0)
patched = hasattr(QuerySet.update, "__wrapped__")
Policy.objects.create(tenant_id="acme", name="while-instrumented")
instrumentor.uninstrument()
Policy.objects.create(tenant_id="acme", name="after-uninstrument")
print(json.dumps({"patched": patched, "restored": not hasattr(QuerySet.update, "__wrapped__"),
                  "listeners": post_save.has_listeners(Policy)}))
'''


def test_uninstrument_undoes_exactly_what_the_integration_did(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    example = Path(__file__).resolve().parents[1] / "examples" / "django_admin"
    env = {"PATH": str(Path(sys.executable).parent), "AUDITRAIL_EXPORTER": f"file:{out}",
           "PYTHONPATH": str(example), "DJANGO_SETTINGS_MODULE": "adminsite.settings",
           "DJANGO_ADMIN_DB": str(tmp_path / "db.sqlite3")}
    done = subprocess.run([sys.executable, "-c", UNINSTRUMENT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"patched": True, "restored": True,
                                                                 "listeners": False}
    from test_launcher import events

    created = [e["payload"]["after"]["name"] for e in events(out)["catalog.policy.create"]]
    assert created == ["while-instrumented"]
