"""`call("module:path")` resolves its path per event: proxies (werkzeug LocalProxy, Django SimpleLazyObject)
stand for the current request's user, on the real Flask-Login + Flask-Admin and the real Django admin."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("flask_login")
pytest.importorskip("flask_admin")
pytest.importorskip("flask_sqlalchemy")

FLASK_APP = '''
from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from flask_login import LoginManager, UserMixin, current_user, login_user
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.secret_key = "test-only"
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///{db}"
db = SQLAlchemy(app)
login = LoginManager(app)


class User(UserMixin):
    def __init__(self, user_id):
        self.id = user_id


@login.user_loader
def load_user(user_id):
    return User(user_id)


class Prompt(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    text = db.Column(db.String(200))


class PromptView(ModelView):
    def is_accessible(self):
        return current_user.is_authenticated


admin = Admin(app)
admin.add_view(PromptView(Prompt, db.session))


@app.route("/login/<name>")
def do_login(name):
    login_user(User(name))
    return "ok"


with app.app_context():
    db.create_all()
    db.session.add(Prompt(id=1, text="v0"))
    db.session.commit()
'''

FLASK_YAML = """
    call_modules: [flask_login]
    context:
      actor: ['call("flask_login:current_user.get_id")']
    events:
      - target: flask_admin.contrib.sqla.view:ModelView.update_model
        event: admin.model.update
        tenant: "'acme'"
        before: {text: model.text}
        after: {text: form.text.data}
    """


def test_flask_admin_edits_by_two_users_in_turn_each_carry_their_own_actor(audit, tmp_path: Path) -> None:
    audit.module("flaskapp", FLASK_APP.replace("{db}", str(tmp_path / "app.db")))
    audit.instrument(FLASK_YAML)
    app = importlib.import_module("flaskapp").app
    ann, bob = app.test_client(), app.test_client()
    assert ann.get("/login/ann").status_code == 200 and bob.get("/login/bob").status_code == 200
    for client, text in ((ann, "v1"), (bob, "v2"), (ann, "v3"), (bob, "v4")):
        response = client.post("/admin/prompt/edit/?id=1", data={"text": text})
        assert response.status_code == 302, response.text[:500]
    events = audit.events("admin.model.update")
    assert [(e["attrs"].get("enduser.id"), e["payload"]["after"]["text"]) for e in events] == [
        ("ann", "v1"), ("bob", "v2"), ("ann", "v3"), ("bob", "v4")]
    assert [e["payload"]["before"]["text"] for e in events] == ["v0", "v1", "v2", "v3"]
    assert audit.counters.extractor_errors == 0


def test_call_outside_a_request_leaves_the_actor_empty_then_finds_the_next_user(audit, tmp_path: Path) -> None:
    """A proxy read with no request bound fails that one event's field, and is not remembered."""
    audit.module("flaskapp2", FLASK_APP.replace("{db}", str(tmp_path / "app2.db")) + textwrap.dedent('''
        def touch(model_id):
            return model_id
        '''))
    audit.instrument(FLASK_YAML.replace("flask_admin.contrib.sqla.view:ModelView.update_model", "flaskapp2:touch")
                     .replace("before: {text: model.text}", "").replace("after: {text: form.text.data}",
                                                                         "payload: {id: model_id}"))
    mod = importlib.import_module("flaskapp2")
    mod.touch(1)  # no request: current_user cannot be read
    with mod.app.test_request_context("/"):
        mod.login_user(mod.User("carol"))
        mod.touch(2)
    assert [e["attrs"].get("enduser.id") for e in audit.events("admin.model.update")] == [None, "carol"]


DJANGO_SCRIPT = '''
import django
from django.conf import settings

settings.configure(
    DEBUG=True, SECRET_KEY="test-only", ROOT_URLCONF="urls", ALLOWED_HOSTS=["*"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.messages"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                   "django.contrib.auth.context_processors.auth",
                                                   "django.contrib.messages.context_processors.messages"]}}],
    USE_TZ=True,
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import Group, User
from django.test import Client

for name in ("ann", "bob"):
    User.objects.create_superuser(name, f"{name}@example.com", "pw-" + name)
group = Group.objects.create(name="g0")
clients = {}
for name in ("ann", "bob"):
    clients[name] = Client()
    assert clients[name].login(username=name, password="pw-" + name)
for name, new in (("ann", "g1"), ("bob", "g2"), ("ann", "g3")):
    response = clients[name].post(f"/admin/auth/group/{group.pk}/change/", {"name": new})
    assert response.status_code == 302, response.content[:500]
import auditrail
auditrail.flush(10)
'''

DJANGO_YAML = """
events:
  - target: django.contrib.admin.options:ModelAdmin.save_model
    event: admin.model.update
    tenant: "'acme'"
    actor: request.user.get_username()
    payload: {name: obj.name, is_staff: request.user.is_staff}
"""


def test_django_admin_changes_by_two_users_read_request_user_per_event(tmp_path: Path) -> None:
    (tmp_path / "urls.py").write_text("from django.contrib import admin\nfrom django.urls import path\n"
                                      "urlpatterns = [path('admin/', admin.site.urls)]\n")
    (tmp_path / "main.py").write_text(DJANGO_SCRIPT)
    (tmp_path / "audit.yaml").write_text(DJANGO_YAML)
    out = tmp_path / "events.jsonl"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "AUDITRAIL_EXPORTER": f"file:{out}", "PYTHONPATH": str(tmp_path),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(bin_dir / "auditrail-instrument"), "python", "main.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [r for line in out.read_text().splitlines()
               for rl in json.loads(line)["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    seen = []
    for record in records:
        if record.get("eventName") == "admin.model.update":
            attrs = {a["key"]: next(iter(a["value"].values())) for a in record["attributes"]}
            seen.append((attrs.get("enduser.id"), json.loads(attrs["audit.payload"])))
    assert seen == [("ann", {"name": "g1", "is_staff": True}), ("bob", {"name": "g2", "is_staff": True}),
                    ("ann", {"name": "g3", "is_staff": True})]
    assert "raised" not in proc.stderr, proc.stderr[-3000:]
