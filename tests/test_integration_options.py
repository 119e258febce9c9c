"""The flask_login, flask_admin, sqlalchemy, stripe and scrapy integrations' options, checked at load with
file:line:column, and their rows in `auditrail integrations`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from auditrail.config import ConfigError, parse_config

from test_integration_django_config import AUDITRAIL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("integrations:\n  sqlalchemy:\n    models: [app.models.]\n",
         r"^audit\.yaml:3:14: integrations\.sqlalchemy\.models\[0\]: 'app\.models\.' is not a mapped class name"),
        ("integrations:\n  sqlalchemy:\n    models: {Policy: Plan Events}\n",
         r"integrations\.sqlalchemy\.models\.Policy: the event prefix 'Plan Events' must be dotted"),
        ("integrations:\n  sqlalchemy:\n    bulk_max_rows: 0\n",
         r"^audit\.yaml:3:20: integrations\.sqlalchemy\.bulk_max_rows: must be a whole number of at least 1"),
        ("integrations:\n  flask_login:\n    trusted_proxies: [proxy]\n",
         r"integrations\.flask_login\.trusted_proxies\[0\]: 'proxy' is not an IP address"),
        ("integrations:\n  flask_login:\n    actor: 'user.'\n", r"integrations\.flask_login\.actor: bad expression"),
        ("integrations:\n  flask_admin:\n    action: false\n",
         r"unknown option 'action' of the flask_admin integration \(did you mean 'actions'\?\)"),
        ("integrations:\n  stripe:\n    webhooks: sometimes\n", r"integrations\.stripe\.webhooks: must be true or false"),
        ("integrations:\n  scrapy:\n    triggered_by: ''\n", r"integrations\.scrapy\.triggered_by: must be a non-empty"),
    ],
)
def test_bad_options_are_reported_with_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, filename="audit.yaml")


def test_options_are_parsed() -> None:
    cfg = parse_config("service_name: s\nintegrations:\n  stripe: false\n  sqlalchemy:\n"
                       "    models: {Policy: plan, app.models.Account: null}\n  scrapy: {triggered_by: cron}\n")
    assert cfg.integrations["stripe"] is None
    assert cfg.integrations["sqlalchemy"]["models"] == {"Policy": "plan", "app.models.Account": None}
    assert cfg.integrations["scrapy"]["triggered_by"] == "cron"


def test_auditrail_integrations_lists_them(tmp_path: Path) -> None:
    (tmp_path / "audit.yaml").write_text("integrations:\n  stripe: false\n")
    done = subprocess.run([AUDITRAIL, "integrations", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=True)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert {"flask_login", "flask_admin", "sqlalchemy", "stripe", "scrapy"} <= set(rows)
    assert rows["flask_admin"]["present"] is True and "admin.object.update" in rows["flask_admin"]["events"]
    assert rows["stripe"]["off_in_config"] is True and "billing.plan.change" in rows["stripe"]["events"]
    assert rows["scrapy"]["events"] == ["crawl.run"] and rows["sqlalchemy"]["enabled"] is True
