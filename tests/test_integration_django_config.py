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
