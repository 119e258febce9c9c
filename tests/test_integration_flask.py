"""The Flask-Login and Flask-Admin integrations on the real libraries (issue 16).

A Flask app with Flask-Login, Flask-SQLAlchemy and a Flask-Admin ModelView (written to tmp_path, no
auditrail import), audited with an audit.yaml without `events:`: the integrations alone record. Requests
go through Flask's own WSGI app (the test client), so auditrail's request capture sees them as in production.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

import auditrail
from auditrail import runtime
from auditrail.config import parse_config

pytest.importorskip("flask_login", reason="Flask-Login is in the dev extras: pip install -e '.[dev]'")
pytest.importorskip("flask_admin", reason="Flask-Admin is in the dev extras: pip install -e '.[dev]'")

APP = """
from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_login import LoginManager, UserMixin, login_user, logout_user
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config.update(SECRET_KEY="test", SQLALCHEMY_DATABASE_URI="sqlite://", TESTING=False)
db = SQLAlchemy(app)
login = LoginManager(app)


class User(UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(80), unique=True)
    password = db.Column(db.String(80))


class Policy(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    tenant_id = db.Column(db.String(20), nullable=False)
    name = db.Column(db.String(40), unique=True, nullable=False)
    monthly_limit = db.Column(db.Integer, db.CheckConstraint("monthly_limit >= 0"), default=0)

    def __str__(self):
        return self.name


@login.user_loader
def load(user_id):
    return db.session.get(User, int(user_id))


@app.post("/login/<int:user_id>")
def do_login(user_id):
    login_user(db.session.get(User, user_id))
    return "ok"


def rename(policy_id, name):
    policy = db.session.get(Policy, policy_id)
    policy.name = name
    db.session.commit()


@app.post("/rename/<int:policy_id>/<name>")
def do_rename(policy_id, name):
    rename(policy_id, name)
    return "ok"


@app.post("/logout")
def do_logout():
    logout_user()
    return "ok"


admin = Admin(app)
admin.add_view(ModelView(Policy, db))

with app.app_context():
    db.create_all()
    db.session.add_all([User(email="ops@vendor.io", password="pw-ops-1"), User(email="bob@acme.io", password="pw-2")])
    db.session.commit()
"""

YAML = """
delivery: {mode: best_effort}
integrations:
  flask_admin: {tenant: obj.tenant_id}
  flask_login: {trusted_proxies: [127.0.0.1]}
"""


def form(**values: Any) -> dict[str, Any]:
    return {"tenant_id": "acme", "name": "chat", "monthly_limit": "100", **values}


@pytest.fixture
def flask_app(audit: Any) -> Any:
    audit.module("flaskapp", APP)
    audit.instrument(YAML)
    import flaskapp

    return flaskapp


def test_admin_create_update_delete_with_before_after_and_the_user_of_each_request(audit: Any, flask_app: Any) -> None:
    ops, bob = flask_app.app.test_client(), flask_app.app.test_client()
    # ops behind our proxy: the client is the right-most address that is not a trusted proxy.
    ops.environ_base.update(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    bob.environ_base.update(REMOTE_ADDR="192.0.2.50")
    assert ops.post("/login/1").status_code == 200 and bob.post("/login/2").status_code == 200
    assert ops.post("/admin/policy/new/", data=form()).status_code == 302
    assert bob.post("/admin/policy/edit/?id=1", data=form(monthly_limit="250")).status_code == 302
    assert ops.post("/admin/policy/edit/?id=1", data=form(monthly_limit="250")).status_code == 302  # unchanged
    assert bob.post("/admin/policy/delete/", data={"id": "1"}).status_code == 302

    create = audit.one("admin.object.create")
    assert create["attrs"]["enduser.id"] == "1" and create["attrs"]["client.address"] == "203.0.113.9"
    assert create["attrs"]["audit.tenant_id"] == "acme" and create["attrs"]["audit.outcome"] == "success"
    assert create["payload"]["model"] == "policy" and create["payload"]["pk"] == "1"
    assert create["payload"]["after"] == {"id": 1, "tenant_id": "acme", "name": "chat", "monthly_limit": 100}

    changed, unchanged = audit.events("admin.object.update")
    assert changed["attrs"]["enduser.id"] == "2" and changed["attrs"]["client.address"] == "192.0.2.50"
    assert changed["payload"]["before"] == {"monthly_limit": 100}
    assert changed["payload"]["after"] == {"monthly_limit": 250}
    assert changed["payload"]["changed"] == ["monthly_limit"]
    assert unchanged["attrs"]["enduser.id"] == "1" and unchanged["payload"]["changed"] == []

    delete = audit.one("admin.object.delete")
    assert delete["attrs"]["enduser.id"] == "2" and delete["payload"]["pk"] == "1"  # the pk from before
    assert delete["payload"]["before"]["name"] == "chat" and delete["attrs"]["audit.tenant_id"] == "acme"


def test_a_save_flask_admin_reports_failed_is_a_failure_with_what_was_tried(audit: Any, flask_app: Any) -> None:
    client = flask_app.app.test_client()
    client.post("/login/1")
    assert client.post("/admin/policy/new/", data=form()).status_code == 302
    assert client.post("/admin/policy/new/", data=form(name="docs")).status_code == 302
    # The database refuses a negative limit (a CHECK constraint the form does not know): the commit fails,
    # Flask-Admin flashes, rolls back and returns False (the page re-renders).
    assert client.post("/admin/policy/new/", data=form(name="neg", monthly_limit="-1")).status_code == 200
    assert client.post("/admin/policy/edit/?id=2", data=form(name="docs2", monthly_limit="-5")).status_code == 200

    ok, _, failed = audit.events("admin.object.create")
    assert ok["attrs"]["audit.outcome"] == "success"
    assert failed["attrs"]["audit.outcome"] == "failure"
    assert failed["payload"]["attempted"]["name"] == "neg" and "pk" not in failed["payload"]
    update = audit.one("admin.object.update")
    assert update["attrs"]["audit.outcome"] == "failure"
    assert update["payload"]["before"] == {"name": "docs", "monthly_limit": 100}
    assert update["payload"]["attempted"] == {"name": "docs2", "monthly_limit": -5}
    with flask_app.app.app_context():  # nothing was changed
        assert flask_app.db.session.get(flask_app.Policy, 2).name == "docs"


def test_bulk_action_lists_the_selected_ids_and_each_deletion(audit: Any, flask_app: Any) -> None:
    client = flask_app.app.test_client()
    client.post("/login/2")
    for name in ("a", "b", "c"):
        client.post("/admin/policy/new/", data=form(name=name))
    response = client.post("/admin/policy/action/", data={"action": "delete", "rowid": ["1", "3"]})
    assert response.status_code == 302
    action = audit.one("admin.action")
    assert action["payload"] == {"action": "delete", "model": "policy", "ids": ["1", "3"], "count": 2}
    assert action["attrs"]["enduser.id"] == "2" and action["attrs"]["audit.risk"] == "high"
    deleted = sorted(e["payload"]["pk"] for e in audit.events("admin.object.delete"))
    assert deleted == ["1", "3"]


def test_the_actor_is_read_per_event_and_nobody_outside_a_login(audit: Any, flask_app: Any) -> None:
    client = flask_app.app.test_client()
    client.post("/admin/policy/new/", data=form(name="anon"))
    client.post("/login/1")
    client.post("/admin/policy/new/", data=form(name="as-ops"))
    client.post("/logout")
    client.post("/login/2")
    client.post("/admin/policy/new/", data=form(name="as-bob"))
    actors = [e["attrs"].get("enduser.id") for e in audit.events("admin.object.create")]
    assert actors == [None, "1", "2"]


def test_no_password_in_any_event(audit: Any, flask_app: Any) -> None:
    from flask_admin.contrib.sqla import ModelView

    flask_app.admin.add_view(ModelView(flask_app.User, flask_app.db, endpoint="users"))
    client = flask_app.app.test_client()
    client.post("/login/1")
    assert client.post("/admin/users/edit/?id=2", data={"email": "bob@acme.io", "password": "n3w-Secret-9"}
                       ).status_code == 302
    event = audit.one("admin.object.update")
    assert event["payload"]["changed"] == ["password"]
    text = str([e["attrs"] for e in audit.events()])
    assert "n3w-Secret-9" not in text and "pw-2" not in text


def test_an_events_entry_in_a_flask_request_gets_the_user_and_address_too(audit: Any) -> None:
    audit.module("flaskapp", APP)
    audit.instrument(YAML + """
events:
  - target: flaskapp:rename
    event: policy.rename
    payload: {policy: policy_id, name: name}
""")
    import flaskapp

    client = flaskapp.app.test_client()
    client.environ_base.update(REMOTE_ADDR="192.0.2.50")
    client.post("/admin/policy/new/", data=form())
    client.post("/login/2")
    assert client.post("/rename/1/docs").status_code == 200
    client.post("/logout")
    client.post("/login/1")
    client.post("/rename/1/chat")
    first, second = audit.events("policy.rename")
    assert first["attrs"]["enduser.id"] == "2" and first["attrs"]["client.address"] == "192.0.2.50"
    assert second["attrs"]["enduser.id"] == "1"


def test_the_actor_option_reads_another_field_of_the_user(audit: Any) -> None:
    audit.module("flaskapp", APP)
    audit.instrument(YAML.replace("flask_login: {trusted_proxies: [127.0.0.1]}", "flask_login: {actor: user.email}"))
    import flaskapp

    client = flaskapp.app.test_client()
    client.post("/login/2")
    client.post("/admin/policy/new/", data=form())
    assert audit.one("admin.object.create")["attrs"]["enduser.id"] == "bob@acme.io"


def test_a_flask_app_without_flask_login_gets_nothing_from_it_and_no_error(audit: Any) -> None:
    audit.module("plainapp", """
import flask_login  # installed and imported, but this app has no LoginManager
from flask import Flask

app = Flask(__name__)


def publish(name):
    return name


@app.post("/publish/<name>")
def do_publish(name):
    return publish(name)
""")
    audit.instrument("delivery: {mode: best_effort}\nevents:\n  - target: plainapp:publish\n    event: doc.publish\n")
    import plainapp

    assert plainapp.app.test_client().post("/publish/readme").status_code == 200
    event = audit.one("doc.publish")
    assert "enduser.id" not in event["attrs"] and audit.counters.extractor_errors == 0
    assert "client.address" not in event["attrs"]  # not this integration's app: nothing added


def test_an_action_whose_deletions_fail_is_a_failure(audit: Any, flask_app: Any) -> None:
    from flask_admin.contrib.sqla import ModelView

    class Locked(ModelView):
        def on_model_delete(self, model: Any) -> None:  # the documented veto: Flask-Admin flashes the error
            raise ValueError(f"{model} is locked")

    flask_app.admin.add_view(Locked(flask_app.Policy, flask_app.db, endpoint="locked"))
    client = flask_app.app.test_client()
    client.post("/login/1")
    client.post("/admin/policy/new/", data=form())
    assert client.post("/admin/locked/action/", data={"action": "delete", "rowid": ["1"]}).status_code == 302
    action = audit.one("admin.action")
    assert action["attrs"]["audit.outcome"] == "failure" and action["payload"]["ids"] == ["1"]
    delete = audit.one("admin.object.delete")
    assert delete["attrs"]["audit.outcome"] == "failure" and delete["payload"]["pk"] == "1"
    with flask_app.app.app_context():
        assert flask_app.db.session.get(flask_app.Policy, 1) is not None


def test_sqlalchemy_history_in_a_flask_request_carries_the_flask_login_user(audit: Any) -> None:
    audit.module("flaskapp", APP)
    audit.instrument(YAML + "  sqlalchemy: {models: {Policy: plan}, tenant: obj.tenant_id}\n")
    import flaskapp

    client = flaskapp.app.test_client()
    client.environ_base.update(REMOTE_ADDR="192.0.2.50")
    client.post("/login/2")
    client.post("/admin/policy/new/", data=form())
    client.post("/admin/policy/edit/?id=1", data=form(monthly_limit="7"))
    admin, history = audit.one("admin.object.update"), audit.one("plan.update")
    assert history["attrs"]["enduser.id"] == "2" and history["attrs"]["client.address"] == "192.0.2.50"
    assert history["attrs"]["audit.tenant_id"] == "acme"
    assert history["payload"]["before"] == admin["payload"]["before"] == {"monthly_limit": 100}
    assert history["payload"]["after"] == admin["payload"]["after"] == {"monthly_limit": 7}


EVENTS_YAML = YAML + """
events:
  - target: flaskapp:rename
    event: policy.rename
    payload: {policy: policy_id, name: name}
"""


def _rename_as_bob(app: Any) -> None:
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR="192.0.2.50")
    client.post("/admin/policy/new/", data=form())
    client.post("/login/2")
    assert client.post("/rename/1/docs").status_code == 200


def _flask_fallbacks() -> list[str]:
    sources = runtime.recorder.sources if runtime.recorder is not None else None
    return [] if sources is None else [s.source for s in (*sources.actor, *sources.source_ip) if "flask" in s.source]


def test_the_fallbacks_outlive_a_new_configure_and_not_the_integration(audit: Any) -> None:
    """The user and address are the integration's fallbacks for as long as it is set up: an app that
    configures auditing again (a new recorder) keeps them; uninstrumented, a new recorder has none."""
    audit.module("flaskapp", APP)
    audit.instrument(EVENTS_YAML)
    import flaskapp

    exporter = InMemoryLogRecordExporter()  # (the first recorder's shut down with it)
    auditrail.configure(parse_config(EVENTS_YAML), exporter=exporter)  # the app's own configure()
    _rename_as_bob(flaskapp.app)
    assert auditrail.flush(10)
    (attrs,) = [r.log_record.attributes for r in exporter.get_finished_logs()
                if r.log_record.event_name == "policy.rename"]
    assert attrs["enduser.id"] == "2" and attrs["client.address"] == "192.0.2.50"
    assert _flask_fallbacks() == ["flask_login current_user", "flask request address"]
    audit.stop()
    auditrail.configure(parse_config("delivery: {mode: best_effort}"), exporter=InMemoryLogRecordExporter())
    try:
        assert _flask_fallbacks() == []
    finally:
        auditrail.shutdown()


def test_instrument_uninstrument_instrument_adds_the_fallbacks_once(audit: Any) -> None:
    audit.module("flaskapp", APP)
    audit.instrument(EVENTS_YAML)
    audit.stop()
    audit.exporter = InMemoryLogRecordExporter()  # (the first one was shut down with its recorder)
    audit.instrument(EVENTS_YAML)
    import flaskapp

    assert _flask_fallbacks() == ["flask_login current_user", "flask request address"]
    _rename_as_bob(flaskapp.app)
    (event,) = audit.events("policy.rename")
    assert event["attrs"]["enduser.id"] == "2" and event["attrs"]["client.address"] == "192.0.2.50"
